"""`field__any=values`: the `in` lookup with one array parameter on PostgreSQL.

psycopg parses the placeholders of a statement with more than 50 parameters in
Python on every call (it caches only small statements), so an IN list of a
chunk's thousands of keys cost more to send than to run. `= ANY(%s)` sends them
as one array. Other databases get the plain `in`.
"""

from __future__ import annotations

from django.db.models import Field
from django.db.models.lookups import In


@Field.register_lookup
class AnyOf(In):
    lookup_name = "any"

    def as_postgresql(self, compiler, connection):
        if not self.rhs_is_direct_value():
            return self.as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        _, values = self.process_rhs(compiler, connection)  # prepared, without None, as `in` sends them
        return f"{lhs} = ANY(%s)", (*lhs_params, list(values))
