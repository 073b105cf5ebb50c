"""Inserting many new rows of one model at once, as fast as the database allows.

`bulk_insert_rows` is `bulk_create` for plain rows (no history, no save() logic, no
signals), given as the keyword arguments of the model rather than instances: on SQLite
it is `bulk_create`; on PostgreSQL the ids are drawn from the
table's sequence in one statement and the rows are sent with COPY, which skips
building, quoting and parsing one huge INSERT. COPY checks every constraint and
fires the insert triggers as INSERT does, and a violation is the same IntegrityError.
"""

from __future__ import annotations

import functools
from datetime import datetime

from django.db import connection, models
from django.utils import timezone


def bulk_insert_rows(model: type[models.Model], rows: list[dict], *, build: bool = False) -> list:
    """Insert `model(**row)` for each row, in order, without building the instances for COPY (which
    costs more than sending them); returns the new primary keys, in order, or with `build` the
    instances, built after as Django builds rows it loads and marked as stored.

    A row holds what `model(**row)` would take: a value per field name or attname (a saved
    instance for a relation, which the built instance keeps as `model(**row)` would); a missing
    field gets its default, and `auto_now`/`auto_now_add` fields the time of the call, as
    `save()` would give each instance.
    """
    if not rows:
        return []
    if connection.vendor != "postgresql":
        objs = model.objects.bulk_create([model(**row) for row in rows])
        return objs if build else [obj.pk for obj in objs]
    columns = _columns(model)
    known = _names(model)
    now = timezone.now()
    made, sent = [], []
    # Every row is made before anything is sent: a refused row leaves the transaction usable.
    for row in rows:
        if not row.keys() <= known:
            raise TypeError(f"{model.__name__} got unexpected keywords: {sorted(row.keys() - known)}")
        values, prepared = [], []
        for attname, name, field, prepare, moment, stamped in columns:
            if stamped:
                value = now
            elif attname in row:
                value = row[attname]
            elif name in row:  # a relation given as an instance
                related = row[name]
                if related is not None and related.pk is None:
                    raise ValueError(
                        f"bulk_insert_rows() prohibited to prevent data loss due to unsaved "
                        f"related object '{name}'."
                    )
                value = None if related is None else related.pk
            else:
                value = field.get_default()
            values.append(value)
            if prepare and not (moment and isinstance(value, datetime) and value.utcoffset() is not None):
                value = field.get_db_prep_save(value, connection)
            prepared.append(value)
        made.append(values)
        sent.append(prepared)
    ids = _copy(model, sent, len(rows))
    if not build:
        return ids
    relations = [(name, field) for _, name, field, *_ in columns if field.is_relation]
    at = _pk_position(model)
    objs = []
    for pk, row, values in zip(ids, rows, made, strict=True):
        values.insert(at, pk)
        obj = model.from_db(connection.alias, None, values)
        for name, field in relations:
            if name in row:
                field.set_cached_value(obj, row[name])
        objs.append(obj)
    return objs


@functools.cache
def _pk_position(model: type[models.Model]) -> int:
    return next(n for n, f in enumerate(model._meta.concrete_fields) if f.primary_key)


def _copy(model: type[models.Model], rows, count: int) -> list[int]:
    """Send `rows` (the values of `_columns(model)`, `count` of them) with COPY, under new ids."""
    sequence_sql, copy_sql = _copy_statements(model)
    with connection.cursor() as cursor:
        # Drawn in one statement, so in increasing order: the rows keep their order.
        cursor.execute(sequence_sql, [count])
        ids = sorted(row[0] for row in cursor.fetchall())
        with connection.wrap_database_errors, cursor.copy(copy_sql) as copy:
            for row, pk in zip(rows, ids, strict=True):
                copy.write_row([pk, *row])
    return ids


# Fields whose value goes to the database as it is: psycopg adapts ints, strings, booleans and
# None as Django's own INSERT sends them, and an aware datetime is what Django's preparation of
# one returns on PostgreSQL (preparing it cost more than the rest of the row). Any other value
# (JSON, decimals, a naive or defaulted datetime, ...) goes through its field's get_db_prep_save,
# as in Django's INSERT.
_AS_IS = (models.IntegerField, models.CharField, models.TextField, models.BooleanField, models.ForeignKey)


@functools.cache
def _columns(model: type[models.Model]) -> list[tuple]:
    """(attname, name, field, whether its value is prepared, whether an aware datetime is sent
    as it is, whether it takes the time of the call) of each field other than the id."""
    return [
        (
            f.attname,
            f.name,
            f,
            not isinstance(f, _AS_IS),
            isinstance(f, models.DateTimeField) and not (f.auto_now or f.auto_now_add),
            bool(getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)),
        )
        for f in model._meta.concrete_fields
        if not f.primary_key
    ]


@functools.cache
def _names(model: type[models.Model]) -> frozenset[str]:
    """The keywords `model(**row)` takes for its concrete fields."""
    return frozenset(n for f in model._meta.concrete_fields for n in {f.name, f.attname})


@functools.cache
def _copy_statements(model: type[models.Model]) -> tuple[str, str]:
    """The statement that draws n ids from the table's sequence; the COPY."""
    quote = connection.ops.quote_name
    table, pk = model._meta.db_table, model._meta.pk.column
    columns = ", ".join(
        quote(c) for c in [pk, *(f.column for f in model._meta.concrete_fields if not f.primary_key)]
    )
    sequence_sql = f"SELECT nextval(pg_get_serial_sequence('{table}', '{pk}')) FROM generate_series(1, %s)"
    return sequence_sql, f"COPY {quote(table)} ({columns}) FROM STDIN"
