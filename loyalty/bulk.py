"""Inserting many new rows of one model at once, as fast as the database allows.

`bulk_insert` is `bulk_create` for plain rows (no history, no save() logic, no
signals): on SQLite it is `bulk_create`; on PostgreSQL the ids are drawn from the
table's sequence in one statement and the rows are sent with COPY, which skips
building, quoting and parsing one huge INSERT. COPY checks every constraint and
fires the insert triggers as INSERT does, and a violation is the same IntegrityError.
"""

from __future__ import annotations

import functools
from datetime import datetime

from django.db import connection, models
from django.utils import timezone


def bulk_insert(objs: list[models.Model]) -> list[models.Model]:
    """Insert `objs` (new instances of one model) in order; sets their primary keys."""
    if not objs:
        return objs
    if connection.vendor != "postgresql":
        return type(objs[0]).objects.bulk_create(objs)
    model = type(objs[0])
    fields, sequence_sql, copy_sql = _copy_statements(model)

    def values(obj) -> list:
        row = []
        for attname, field, moment in fields:
            value = getattr(obj, attname)
            if field is not None and not (
                moment and isinstance(value, datetime) and timezone.is_aware(value)
            ):
                value = field.get_db_prep_save(field.pre_save(obj, True), connection)
            row.append(value)
        return row

    with connection.cursor() as cursor:
        # Drawn in one statement, so in increasing order: the rows keep the order of `objs`.
        cursor.execute(sequence_sql, [len(objs)])
        ids = sorted(row[0] for row in cursor.fetchall())
        with connection.wrap_database_errors, cursor.copy(copy_sql) as copy:
            for obj, pk in zip(objs, ids, strict=True):
                obj._prepare_related_fields_for_save(operation_name="bulk_insert")  # as bulk_create does
                obj.pk = pk
                copy.write_row([pk, *values(obj)])
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
    return objs


# Fields whose value goes to the database as it is: psycopg adapts ints, strings, booleans and
# None as Django's own INSERT sends them, and an aware datetime is what Django's preparation of
# one returns on PostgreSQL (preparing it cost more than the rest of the row). Any other value
# (JSON, decimals, a naive or defaulted datetime, ...) goes through its field's get_db_prep_save,
# as in Django's INSERT.
_AS_IS = (models.IntegerField, models.CharField, models.TextField, models.BooleanField, models.ForeignKey)


@functools.cache
def _copy_statements(model: type[models.Model]) -> tuple[list[tuple], str, str]:
    """(attribute name, the field unless sent as it is, whether an aware datetime is) of each
    field other than the id; the statement that draws n ids; the COPY."""
    quote = connection.ops.quote_name
    table, pk = model._meta.db_table, model._meta.pk.column
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    prepared = [
        (
            f.attname,
            None if isinstance(f, _AS_IS) else f,
            isinstance(f, models.DateTimeField) and not (f.auto_now or f.auto_now_add),
        )
        for f in fields
    ]
    columns = ", ".join(quote(c) for c in [pk, *(f.column for f in fields)])
    sequence_sql = f"SELECT nextval(pg_get_serial_sequence('{table}', '{pk}')) FROM generate_series(1, %s)"
    return prepared, sequence_sql, f"COPY {quote(table)} ({columns}) FROM STDIN"
