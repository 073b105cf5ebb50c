"""The import benchmark: rows per second of `import_transactions` for a file of purchases.

A CSV of N purchase rows (default 100,000 on PostgreSQL) over 1,000 members is
imported through the same engine and services as the command (validation, the
idempotency keys, the postings of `loyalty.earning.activities_post`, which gives each row
what `activity_post` would and writes a chunk's plain earnings set-based: on PostgreSQL
entries, lots and imported keys go in with COPY, `loyalty.bulk.bulk_insert_rows`), in
chunks of 5,000 rows, so each member appears about five times per chunk.
The floor is the ledger alone: `ledger.credit` of the same points, one call per
row, on a sample of rows (projected to N): what the rows would cost if parsing,
validation, the earning rules and the bookkeeping were free. Target (PostgreSQL):
100,000 rows in under 20 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection

from loyalty import ledger
from loyalty.benchmarks.base import Measurement, checkpoint
from loyalty.imports.engine import import_create, import_run
from loyalty.ledger import Actor
from loyalty.models import EarningRule, Member, Program
from loyalty.services import member_create

MEMBERS = 1_000
FLOOR_SAMPLE = 2_000
TARGET_ROWS, TARGET_SECONDS = 100_000, 20.0


@dataclass(frozen=True)
class Counts:
    credits: int  # rows in the file
    debits: int = 0
    lots: int = 0


SCALES = {
    "small": {"postgresql": Counts(2_000), "sqlite": Counts(2_000)},
    "full": {"postgresql": Counts(100_000), "sqlite": Counts(20_000)},
}


def default_counts(scale: str, vendor: str) -> Counts:
    return SCALES[scale].get(vendor, SCALES[scale]["postgresql"])


@dataclass
class ImportReport:
    measurements: list[Measurement]
    setup_seconds: float
    problems: list[str] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    sql: dict[str, list[str]] = field(default_factory=dict)


def run(counts: Counts, *, log: Callable[[str], None] = lambda message: None) -> ImportReport:
    began = time.perf_counter()
    rows = counts.credits
    program = Program.objects.create(name="Bench", slug="bench", time_zone="Europe/Paris")
    EarningRule.objects.create(
        program=program,
        activity_code="purchase",
        name="Purchase",
        points_per_unit=Decimal("1"),
        fixed_points=0,
    )
    numbers = [
        member_create(program=program, first_name="M", last_name=str(n), channel="import").membership_number
        for n in range(MEMBERS)
    ]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lines = ["membership_number,type,reference,occurred_at,amount"]
    lines += [
        f"{numbers[n % MEMBERS]},purchase,I-{n},{(start + timedelta(seconds=n)).isoformat()},{10 + n % 90}.50"
        for n in range(rows)
    ]
    content = ("\n".join(lines) + "\n").encode()
    batch = import_create(program=program, kind="transactions", filename="bench.csv", content=content)
    if connection.vendor == "postgresql":
        # Production has autovacuum to keep the planner's statistics fresh; this database was just
        # filled and autovacuum may not have looked at it yet, so the import would be planned
        # against empty-table estimates (the earlier-events lookup then scans the program's entries).
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    setup = time.perf_counter() - began
    checkpoint(log, "the import")
    log(f"importing {rows:,} rows ({len(content) / 1e6:.1f} MB)")
    t0 = time.perf_counter()
    done = import_run(batch_id=batch.pk, progress=lambda n: log(f"  {n:,} rows") if n % 20_000 == 0 else None)
    seconds = time.perf_counter() - t0
    problems = []
    if done.landed != rows:
        problems.append(f"{rows - done.landed} rows did not land ({done.failed} refused).")
    # The floor: the ledger's own credit, per row, on a sample of the same members.
    sample = min(rows, FLOOR_SAMPLE)
    accounts = {m.pk: m.account for m in Member.objects.filter(program=program).select_related("account")}
    ordered = list(accounts.values())
    actor = Actor.job("benchmark")
    t0 = time.perf_counter()
    for n in range(sample):
        ledger.credit(
            account=ordered[n % len(ordered)],
            points=10,
            reason="floor",
            actor=actor,
            idempotency_key=f"floor:{n}",
            source="import",
            occurred_at=start,
        )
    floor_seconds = (time.perf_counter() - t0) * rows / sample
    measurement = Measurement(
        operation="import purchase rows",
        count=rows,
        seconds=seconds,
        floor_seconds=floor_seconds,
        notes={"floor": f"ledger.credit per row, {sample:,} rows measured, projected to {rows:,}"},
    )
    projected = seconds * TARGET_ROWS / rows
    target = {
        "target": f"{TARGET_ROWS:,} rows in under {TARGET_SECONDS:.0f} s",
        "value": f"{projected:.1f} s",
        "met": projected < TARGET_SECONDS,
        "applies": connection.vendor == "postgresql",
        "projected": rows != TARGET_ROWS,
    }
    return ImportReport(measurements=[measurement], setup_seconds=setup, problems=problems, targets=[target])
