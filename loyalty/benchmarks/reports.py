"""`python manage.py benchmark reports`: every report page and the audit browser on a big program.

Data (set-based SQL, in the throwaway database): one program with `debits` members
(100,000 by default) joined over two years across three tiers, one points account
each, `credits` ledger entries (1,000,000 by default) posted evenly over the last
two years in id order (earn, bonus, redeem, expire, adjust), the members' history (a "+" row each
and a "~" row for one in five), and a dispute for one member in twenty.

Each page is requested through Django's test client as a supervisor of the program
(the whole stack: middleware, session, selectors, template, chart), `REPEAT` times
after one warm-up; its floor is the same SQL statements the page sent, replayed
through the raw driver cursor (what the page cannot go below without fewer or
cheaper queries). ratio = floor time / page time (1.0: the page costs only its SQL).

Target (PostgreSQL): every report page under one second (the median of the runs).
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse
from django.utils import timezone

from loyalty.benchmarks.base import Measurement, RawSQL, bulk_load, insert_select
from loyalty.models import LedgerEntry, Member, PointsAccount, Program, Tier
from loyalty.roles import Role
from loyalty.services import staff_user_create

REPEAT = 5
TARGET_SECONDS = 1.0
DAYS = 730


@dataclass(frozen=True)
class Counts:
    credits: int  # ledger entries
    debits: int  # members
    lots: int = 0  # unused here (the command passes it to every benchmark)


SCALES: dict[str, dict[str, Counts]] = {
    "small": {"postgresql": Counts(20_000, 2_000), "sqlite": Counts(20_000, 2_000)},
    "full": {"postgresql": Counts(1_000_000, 100_000), "sqlite": Counts(1_000_000, 100_000)},
}


def default_counts(scale: str, vendor: str) -> Counts:
    return SCALES[scale].get(vendor, SCALES[scale]["postgresql"])


@dataclass
class ReportsBenchReport:
    measurements: list[Measurement]
    setup_seconds: float
    problems: list[str] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    sql: dict[str, list[str]] = field(default_factory=dict)


def run(counts: Counts, *, log: Callable[[str], None] = lambda message: None) -> ReportsBenchReport:
    """Run on `connection`, which must be a throwaway database."""
    report = ReportsBenchReport(measurements=[], setup_seconds=0.0)
    began = time.perf_counter()
    program, supervisor = _set_up(counts, log)
    report.setup_seconds = time.perf_counter() - began
    from agents.supervisor.reports import REPORTS

    client = Client()
    client.force_login(supervisor)
    some_member = (
        Member.objects.filter(program=program)
        .order_by("pk")
        .values_list("membership_number", flat=True)[counts.debits // 2]
    )
    pages = [(f"report {slug}", reverse("supervisor:report", args=[slug]), {}) for slug in REPORTS]
    pages += [
        ("audit page 1", reverse("supervisor:audit_list"), {}),
        ("audit page 20", reverse("supervisor:audit_list"), {"page": 20}),
        ("audit ledger only", reverse("supervisor:audit_list"), {"model": "loyalty.ledgerentry"}),
        ("audit one member", reverse("supervisor:audit_list"), {"member": some_member}),
        ("audit by author", reverse("supervisor:audit_list"), {"author": "job:bench"}),
    ]
    with override_settings(ALLOWED_HOSTS=["*"]):
        for name, url, params in pages:
            measurement, sql = _measure(client, name, url, params, log)
            report.measurements.append(measurement)
            report.sql[name] = sql
            if measurement.notes.get("status") != 200:
                report.problems.append(f"{name} answered {measurement.notes.get('status')}.")
    postgres = connection.vendor == "postgresql"
    for m in report.measurements:
        if m.operation.startswith("report "):
            median = m.notes["median_seconds"]
            report.targets.append(
                {
                    "target": f"{m.operation} under {TARGET_SECONDS:.0f} s",
                    "value": f"{median:.3f} s",
                    "met": median < TARGET_SECONDS,
                    "applies": postgres,
                }
            )
    return report


def _measure(client: Client, name: str, url: str, params: dict, log) -> tuple[Measurement, list[str]]:
    client.get(url, params)  # warm-up: caches, the database's buffers
    times, queries = [], None
    for _ in range(REPEAT):
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            response = client.get(url, params)
            times.append(time.perf_counter() - began)
        queries = [q["sql"] for q in captured.captured_queries]
    floor_times = [_replay(queries) for _ in range(REPEAT)]
    floor = sum(t for t in floor_times if t is not None) if all(t is not None for t in floor_times) else 0.0
    median = statistics.median(times)
    log(f"{name}: median {median * 1000:.0f} ms, {len(queries)} queries, status {response.status_code}")
    return (
        Measurement(
            operation=name,
            count=REPEAT,
            seconds=sum(times),
            floor_seconds=floor,
            statements=len(queries),
            floor_statements=len(queries),
            statements_per="page",
            notes={
                "median_seconds": round(median, 4),
                "floor_median_seconds": round(statistics.median(floor_times), 4) if floor else None,
                "queries": len(queries),
                "status": response.status_code,
            },
        ),
        queries,
    )


_DECLARE = re.compile(r'^DECLARE "[^"]+" NO SCROLL CURSOR WITH(OUT)? HOLD FOR ')


def _replay(queries: list[str]) -> float | None:
    """The page's statements through the raw driver (no ORM, no template). None if the
    interpolated SQL Django logged cannot be replayed as is (SQLite's logged parameters)."""
    cursor = RawSQL(connection).driver_cursor()
    began = time.perf_counter()
    try:
        for sql in queries:
            if sql.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
                continue
            # A server-side cursor (a form's choices iterated on PostgreSQL): its query.
            sql = _DECLARE.sub("", sql)
            cursor.execute(sql)
            cursor.fetchall()
    except Exception:  # a floor we cannot replay is reported as missing, not fatal
        connection.connection.rollback()
        return None
    finally:
        cursor.close()
    return time.perf_counter() - began


# --- Data --------------------------------------------------------------------------------


def _days_before(raw: RawSQL, base: str, days: str) -> str:
    if raw.postgres:
        return f"(CAST({base} AS date) - CAST({days} AS integer))"
    return f"date({base}, '-' || ({days}) || ' days')"


def _set_up(counts: Counts, log) -> tuple[Program, Any]:
    from disputes.models import Dispute

    raw, when = RawSQL(connection), RawSQL(connection).when
    now = timezone.now()
    program = Program.objects.create(name="Benchmark reports", slug="bench-reports", currency="EUR")
    supervisor = staff_user_create(
        username="bench-supervisor", role=Role.SUPERVISOR, password=None, programs=[program]
    )
    tiers = [
        Tier.objects.create(program=program, name=n, rank=r, threshold=t)
        for n, r, t in (("Bronze", 1, 0), ("Silver", 2, 500), ("Gold", 3, 2000))
    ]
    members, entries = counts.debits, counts.credits
    historical_member = Member.history.model
    began = time.perf_counter()
    with bulk_load(connection, [Member, historical_member, PointsAccount, LedgerEntry, Dispute]):
        insert_select(
            connection,
            Member,
            {
                "program": ("%s", [program.pk]),
                "membership_number": ("CAST(%s + s.n AS TEXT)", [10**11]),
                "first_name": ("%s || CAST(s.n AS TEXT)", ["Bench"]),
                "last_name": ("%s", ["Member"]),
                "email": ("%s", [""]),
                "phone": ("%s", [""]),
                "joined_on": (_days_before(raw, "%s", "s.n %% 730"), [now.date().isoformat()]),
                "status": ("CASE WHEN s.n %% 50 = 0 THEN 'closed' ELSE 'active' END", []),
                "tier": ("CASE s.n %% 3 WHEN 0 THEN %s WHEN 1 THEN %s ELSE %s END", [t.pk for t in tiers]),
                "created_at": ("%s", [when(now)]),
            },
            raw.series(),
            [members - 1],
        )
        log(f"members: {members:,} ({time.perf_counter() - began:.1f} s)")
        # Their history: a "+" row each (by an import) and a "~" row for one in five (by a job).
        member_columns = {f.name: (f"m.{f.column}", []) for f in Member._meta.concrete_fields}
        for change, label, where, minutes in (
            ("+", "import:bench", "", 2 * DAYS * 1440),
            ("~", "job:bench", "AND m.id %% 5 = 0", 1440),
        ):
            insert_select(
                connection,
                historical_member,
                {
                    **member_columns,
                    "history_date": (
                        raw.plus_minutes("%s", "-((CAST(m.id AS BIGINT) * 7919) %% %s)"),
                        [when(now), minutes],
                    ),
                    "history_type": ("%s", [change]),
                    "history_change_reason": ("%s", [label]),
                },
                f"loyalty_member m WHERE m.program_id = %s {where} ORDER BY m.id",
                [program.pk],
            )
        insert_select(
            connection,
            PointsAccount,
            {
                "member": ("m.id", []),
                "program": ("m.program_id", []),
                "updated_at": ("%s", [when(now)]),
            },
            "loyalty_member m WHERE m.program_id = %s",
            [program.pk],
        )
        began = time.perf_counter()
        # Entry n: account n % members; kinds in the proportions of a live program.
        kind = (
            "CASE WHEN s.n %% 10 < 6 THEN 'earn' WHEN s.n %% 10 = 6 THEN 'bonus' WHEN s.n %% 10 = 7 "
            "THEN 'redeem' WHEN s.n %% 10 = 8 THEN 'expire' ELSE 'adjust' END"
        )
        points = (
            "CASE WHEN s.n %% 10 < 6 THEN 10 + s.n %% 90 WHEN s.n %% 10 = 6 THEN 25 WHEN s.n %% 10 = 7 "
            "THEN -(5 + s.n %% 20) WHEN s.n %% 10 = 8 THEN -(1 + s.n %% 7) "
            "WHEN s.n %% 20 = 9 THEN 15 ELSE -3 END"
        )
        # Ids follow posting order, as in a live ledger (posted_at is the clock at insert).
        posted = raw.plus_minutes("%s", "-(((%s - s.n) * CAST(%s AS BIGINT)) / %s)")
        posted_params = [when(now), entries - 1, DAYS * 1440, entries]
        insert_select(
            connection,
            LedgerEntry,
            {
                "program": ("a.program_id", []),
                "account": ("a.id", []),
                "kind": (kind, []),
                "points": (points, []),
                "pending_points": ("0", []),
                "balance_after": ("0", []),
                "pending_after": ("0", []),
                "occurred_at": (posted, posted_params),
                "posted_at": (posted, posted_params),
                "source": ("%s", [LedgerEntry.Source.IMPORT]),
                "reference": ("%s", [""]),
                "idempotency_key": ("%s || CAST(s.n AS TEXT)", ["seed:"]),
                "fingerprint": ("%s", [""]),
                "reason": ("%s", ["Benchmark data"]),
                "actor_label": ("%s", ["job:bench"]),
            },
            f"{raw.series()} JOIN (SELECT id, program_id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS k "
            "FROM loyalty_pointsaccount WHERE program_id = %s) AS a ON a.k = s.n %% %s",
            [entries - 1, program.pk, members],
        )
        log(f"ledger entries: {entries:,} ({time.perf_counter() - began:.1f} s)")
        created = raw.plus_minutes("%s", "-((CAST(m.id AS BIGINT) * 104729) %% %s)")
        resolved = raw.plus_minutes(created, "60 * (1 + m.id %% 100)")
        insert_select(
            connection,
            Dispute,
            {
                "program": ("m.program_id", []),
                "member": ("m.id", []),
                "category": ("%s", ["missing_points"]),
                "subject": ("%s", ["Points missing"]),
                "description": ("%s", ["Benchmark"]),
                "resolution": ("%s", [""]),
                "status": ("CASE WHEN m.id %% 3 = 0 THEN 'open' ELSE 'resolved' END", []),
                "created_at": (created, [when(now), DAYS * 1440]),
                "updated_at": (created, [when(now), DAYS * 1440]),
                "first_response_due": (created, [when(now), DAYS * 1440]),
                "resolution_due": (raw.plus_minutes(created, "4800"), [when(now), DAYS * 1440]),
                "resolved_at": (
                    f"CASE WHEN m.id %% 3 = 0 THEN NULL ELSE {resolved} END",
                    [when(now), DAYS * 1440],
                ),
                "resolution_seconds": (
                    "CASE WHEN m.id %% 3 = 0 THEN NULL ELSE 3600 * (1 + m.id %% 100) END",
                    [],
                ),
                "resolved_within_sla": ("CASE WHEN m.id %% 3 = 0 THEN NULL ELSE m.id %% 100 < 80 END", []),
            },
            "loyalty_member m WHERE m.program_id = %s AND m.id %% 20 = 0",
            [program.pk],
        )
    # Balances to match the entries (the liability report reads them).
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE loyalty_pointsaccount SET balance = COALESCE((SELECT SUM(e.points) FROM "
            "loyalty_ledgerentry e WHERE e.account_id = loyalty_pointsaccount.id), 0) WHERE program_id = %s",
            [program.pk],
        )
        cursor.execute("VACUUM ANALYZE" if raw.postgres else "ANALYZE")
    log("balances set, analyzed")
    return program, supervisor
