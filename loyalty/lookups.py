"""`field__any=values`: the `in` lookup with one array parameter on PostgreSQL.

psycopg parses the placeholders of a statement with more than 50 parameters in
Python on every call (it caches only small statements), so an IN list of a
chunk's thousands of keys cost more to send than to run. `= ANY(%s)` sends them
as one array. Other databases get the plain `in`.
"""

from __future__ import annotations

from django.db.models import CharField, Field, IntegerField, TextField
from django.db.models.lookups import In
from django.utils.datastructures import OrderedSet


@Field.register_lookup
class AnyOf(In):
    lookup_name = "any"

    def get_prep_lookup(self):
        # Django prepares each value through the field; for plain values of the column's own
        # type that returns them as they are, and a chunk's thousands of keys made it a cost.
        if _plain_values(self.lhs, self.rhs):
            return list(self.rhs)
        return super().get_prep_lookup()

    def as_postgresql(self, compiler, connection):
        if not self.rhs_is_direct_value():
            return self.as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        if _plain_values(self.lhs, self.rhs):
            values = OrderedSet(self.rhs)  # as `in` sends them: each once (and no None: plain)
            if not values:
                return self.as_sql(compiler, connection)  # `in` of nothing: matches nothing
        else:
            _, values = self.process_rhs(compiler, connection)  # prepared, without None
        return f"{lhs} = ANY(%s)", (*lhs_params, list(values))


def _plain_values(lhs, values) -> bool:
    """Whether `values` are strings for a text column or integers for an integer one (exactly
    those types: a bool, a lazy string or a number as text goes through the field)."""
    if not isinstance(values, list | tuple | set | frozenset):
        return False
    field = getattr(lhs, "output_field", None)
    if isinstance(field, CharField | TextField):
        kind = str
    elif isinstance(field, IntegerField):
        kind = int
    else:
        return False
    return all(type(value) is kind for value in values)
