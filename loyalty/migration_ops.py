"""Index operations for the big tables (the ledger, the lots) that do not stop the postings.

A plain CREATE INDEX holds off every write to the table while it scans it, seconds to minutes on
a production ledger. On PostgreSQL these build and drop indexes CONCURRENTLY (the migration must
be `atomic = False`); on other databases (SQLite in development) they are the plain operations.
"""

from __future__ import annotations

from django.contrib.postgres import operations as postgres
from django.db.migrations.operations import AddIndex, RemoveIndex


class _ConcurrentlyOnPostgres:
    concurrent: type  # the operation run on PostgreSQL
    plain: type  # the one run elsewhere

    def database_forwards(self, app_label, schema_editor, *states):
        return self._for(schema_editor).database_forwards(self, app_label, schema_editor, *states)

    def database_backwards(self, app_label, schema_editor, *states):
        return self._for(schema_editor).database_backwards(self, app_label, schema_editor, *states)

    def _for(self, schema_editor) -> type:
        return self.concurrent if schema_editor.connection.vendor == "postgresql" else self.plain


class AddIndexConcurrently(_ConcurrentlyOnPostgres, postgres.AddIndexConcurrently):
    concurrent, plain = postgres.AddIndexConcurrently, AddIndex


class RemoveIndexConcurrently(_ConcurrentlyOnPostgres, postgres.RemoveIndexConcurrently):
    concurrent, plain = postgres.RemoveIndexConcurrently, RemoveIndex
