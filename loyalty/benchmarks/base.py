"""What every benchmark needs: a throwaway database, raw SQL helpers, and the results table."""

from __future__ import annotations

import copy
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import django
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models, transaction


@dataclass
class Measurement:
    """One operation: our code and its floor (the same SQL through the raw driver), same run."""

    operation: str
    count: int
    seconds: float
    floor_seconds: float
    statements: int = 0
    floor_statements: int = 0
    statements_per: str = "call"
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def floor_per_second(self) -> float:
        return self.count / self.floor_seconds if self.floor_seconds else 0.0

    @property
    def ratio(self) -> float:
        """Ours / floor: 1.0 means our Python adds nothing to the statements' own cost."""
        return self.per_second / self.floor_per_second if self.floor_per_second else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "count": self.count,
            "seconds": round(self.seconds, 4),
            "per_second": round(self.per_second, 1),
            "floor_seconds": round(self.floor_seconds, 4),
            "floor_per_second": round(self.floor_per_second, 1),
            "ratio": round(self.ratio, 3),
            "statements": {
                "ours": self.statements,
                "floor": self.floor_statements,
                "per": self.statements_per,
            },
            **self.notes,
        }


def checkpoint(log: Callable[[str], None], before: str) -> None:
    """On PostgreSQL, write out every dirty page before a timed run. Otherwise the run pays, at
    the next checkpoint, for the pages its set-up (or an earlier benchmark) left dirty, and for
    the full-page images that checkpoint forces: seconds either way at these sizes."""
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        return
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except DatabaseError as error:  # needs a superuser or pg_checkpoint: measure without it
        log(f"no CHECKPOINT before {before} ({error}); figures may vary more")


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


def machine_info(load_before: float | None) -> dict[str, Any]:
    """Where a result came from; other work on the machine skews absolute rates more than ratios."""
    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": {"before": load_before, "after": load_average()},
    }


def format_table(measurements: list[Measurement]) -> str:
    header = ("operation", "count", "seconds", "per second", "floor per second", "ratio")
    rows = [
        (
            m.operation,
            f"{m.count:,}",
            f"{m.seconds:.2f}",
            f"{m.per_second:,.1f}",
            f"{m.floor_per_second:,.1f}",
            f"{m.ratio:.2f}",
        )
        for m in measurements
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join(
            [first, *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))]
        )

    return "\n".join([line(header), "  ".join("-" * width for width in widths), *map(line, rows)])


# --- The throwaway database ----------------------------------------------------


def bench_database_name(settings_dict: dict) -> str:
    """`bench_<NAME>` on servers, distinct from the test runner's `test_<NAME>`."""
    name = str(settings_dict["NAME"])
    return f"bench_{name}"[:63]  # PostgreSQL's identifier limit


@contextmanager
def throwaway_database(alias: str = DEFAULT_DB_ALIAS) -> Iterator[Any]:
    """Point `alias` at a fresh, migrated database for the duration, then drop it.

    The database is created and destroyed by Django's own test-database machinery
    (`create_test_db` / `destroy_test_db`), but on a *new* connection object that
    temporarily replaces the alias's one: the caller's connection, its settings
    and any transaction it has open (a test's, say) are never touched, so the real
    data cannot be polluted, and an in-memory SQLite database (which ignores
    `close()`) is never mistaken for the target. SQLite gets a file in a fresh
    temporary folder; a server gets `bench_<NAME>`.
    """
    real = connections[alias]
    real_settings = settings.DATABASES[alias]
    bench_settings = copy.deepcopy(real.settings_dict)
    temp_dir = None
    if real.vendor == "sqlite":
        temp_dir = tempfile.mkdtemp(prefix="bench-")
        bench_name = str(Path(temp_dir) / "bench.sqlite3")
    else:
        bench_name = bench_database_name(bench_settings)
    bench_settings.setdefault("TEST", {})["NAME"] = bench_name
    if real.vendor == "sqlite":
        # Tables, indexes and constraints straight from the models, as the test runner
        # does with MIGRATE=False: the same schema in seconds instead of a minute of
        # table rebuilds. On PostgreSQL the migrations run, so its triggers are there.
        bench_settings["TEST"]["MIGRATE"] = False
    bench = real.__class__(bench_settings, alias)
    # create_test_db writes the test name into settings.DATABASES[alias]: give it
    # our copy, so the real connection's settings dictionary keeps its name.
    settings.DATABASES[alias] = bench_settings
    connections[alias] = bench
    try:
        bench.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=False)
        yield bench
    finally:
        try:
            # Only ever drop what we created: if creation failed before switching
            # the name, NAME is still the real database's.
            if bench.settings_dict["NAME"] == bench_name:
                bench.creation.destroy_test_db(real.settings_dict["NAME"], verbosity=0)
            else:
                bench.close()
        finally:
            connections[alias] = real
            settings.DATABASES[alias] = real_settings
            # Content-type ids cached from the bench database mean nothing in the real one.
            ContentType.objects.clear_cache()
            if temp_dir:
                shutil.rmtree(temp_dir, ignore_errors=True)


def _secondary_indexes(connection, tables: list[str]) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the indexes on `tables` that no constraint owns."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
                "WHERE t.relname = ANY(%s) AND pg_table_is_visible(t.oid) AND NOT i.indisprimary "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) "
                "ORDER BY c.relname",
                [tables],
            )
        elif connection.vendor == "sqlite":
            marks = ", ".join(["%s"] * len(tables))
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                f"AND tbl_name IN ({marks}) ORDER BY name",
                tables,
            )
        else:
            return []
        return cursor.fetchall()


@contextmanager
def bulk_load(connection, models_: list[type[models.Model]]) -> Iterator[None]:
    """Make a big set-based load cheap: the tables' secondary indexes are dropped and built
    once at the end (one sort instead of a million insertions), and on PostgreSQL the
    foreign-key triggers are off for the session when the role may do that. Only for data
    that is consistent by construction; the measured operations run with everything on."""
    indexes = _secondary_indexes(connection, [m._meta.db_table for m in models_])
    postgres = connection.vendor == "postgresql"
    replica = False
    with connection.cursor() as cursor:
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
        if postgres:
            try:
                with transaction.atomic():
                    cursor.execute("SET session_replication_role = replica")
                replica = True
            except DatabaseError:  # not a superuser: keep the checks, just slower
                pass
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if replica:
                cursor.execute("SET session_replication_role = DEFAULT")
            if postgres:
                cursor.execute("SET maintenance_work_mem = '256MB'")
            for _, create in indexes:
                cursor.execute(create)
            if postgres:
                cursor.execute("RESET maintenance_work_mem")


# --- Raw SQL -----------------------------------------------------------------------

_FORMAT_MARK = re.compile(r"(?<!%)%s")


class RawSQL:
    """SQL written once in the `%s` style, turned into what the raw driver of `connection` takes."""

    def __init__(self, connection):
        self.connection = connection
        self.vendor = connection.vendor
        self.postgres = self.vendor == "postgresql"

    def __call__(self, sql: str) -> str:
        if self.vendor == "sqlite":
            return _FORMAT_MARK.sub("?", sql).replace("%%", "%")
        return sql

    def driver_cursor(self):
        """A cursor of the DB-API connection itself (no Django wrapper)."""
        self.connection.ensure_connection()
        return self.connection.connection.cursor()

    def when(self, moment) -> Any:
        """A datetime as the driver expects it (SQLite stores text in UTC)."""
        return self.connection.ops.adapt_datetimefield_value(moment)

    def series(self, last_param: str = "%s") -> str:
        """`FROM` source of rows n = 0..last (inclusive)."""
        if self.postgres:
            return f"generate_series(0, {last_param}) AS s(n)"
        return (
            f"(WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < {last_param}) "
            "SELECT n FROM s) AS s"
        )

    def plus_minutes(self, base: str, minutes: str) -> str:
        if self.postgres:
            return f"(CAST({base} AS timestamptz) + ({minutes}) * interval '1 minute')"
        return f"datetime({base}, ({minutes}) || ' minutes')"

    def lock(self, of: str) -> str:
        return f" FOR NO KEY UPDATE OF {of}" if self.postgres else ""


def _constant(model_field: models.Field, connection) -> tuple[str, list]:
    """The value a row gets when the benchmark does not set the column: its default, or NULL."""
    if model_field.has_default():
        return "%s", [model_field.get_db_prep_save(model_field.get_default(), connection)]
    if model_field.null:
        return "NULL", []
    raise LookupError(
        f"{model_field.model.__name__}.{model_field.name} has no default and is not nullable: "
        "the benchmark must give it a value."
    )


def _columns(model: type[models.Model]) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if not f.primary_key]


def insert_select(
    connection, model: type[models.Model], values: dict[str, tuple[str, list]], source: str, params=()
) -> int:
    """`INSERT INTO <model> SELECT ...`: one statement for any number of rows.

    `values` maps field names to SQL expressions (with their params) over `source`;
    the other columns take their default or NULL, so a column added to the model
    later does not break the set-up.
    """
    columns, exprs, expr_params = [], [], []
    for model_field in _columns(model):
        expr, p = values.get(model_field.name) or _constant(model_field, connection)
        columns.append(connection.ops.quote_name(model_field.column))
        exprs.append(expr)
        expr_params += p
    unknown = set(values) - {f.name for f in _columns(model)}
    if unknown:
        raise LookupError(f"{model.__name__} has no field {', '.join(sorted(unknown))}.")
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(exprs)} FROM {source}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*expr_params, *params])
        return cursor.rowcount


class RowInsert:
    """A single-row `INSERT ... RETURNING id` for a floor loop: the SQL is built once, and each
    call only drops its values into a copy of the prepared parameter list."""

    def __init__(self, raw: RawSQL, model: type[models.Model], slots: tuple[str, ...], rows: int = 1):
        connection = raw.connection
        self.columns = _columns(model)
        names = [f.name for f in self.columns]
        missing = set(slots) - set(names)
        if missing:
            raise LookupError(f"{model.__name__} has no field {', '.join(sorted(missing))}.")
        base: list = []
        marks: list[str] = []
        for model_field in self.columns:
            if model_field.name in slots:
                marks.append("%s")
                base.append(None)
            else:
                expr, p = _constant(model_field, connection)
                marks.append(expr)
                base += p
        self.base = base
        # Where each slot's value goes in the parameter list of one row.
        positions, i = [], 0
        for mark, model_field in zip(marks, self.columns, strict=True):
            if mark == "%s":
                if model_field.name in slots:
                    positions.append((slots.index(model_field.name), i))
                i += 1
        self.positions = [index for _, index in sorted(positions)]
        row = f"({', '.join(marks)})"
        table = connection.ops.quote_name(model._meta.db_table)
        column_list = ", ".join(connection.ops.quote_name(f.column) for f in self.columns)
        self.rows = rows
        self.sql = raw(f"INSERT INTO {table} ({column_list}) VALUES {', '.join([row] * rows)} RETURNING id")

    def params(self, *rows: tuple) -> list:
        """Parameters for `rows` (each a tuple of slot values, in slot order)."""
        out: list = []
        for values in rows:
            p = self.base.copy()
            for index, value in zip(self.positions, values, strict=True):
                p[index] = value
            out += p
        return out
