"""The ledger benchmark: credits, debits, expiry and reconcile, each next to its raw-driver floor.

Every operation runs twice on identical data in the same throwaway database:
once through `loyalty.ledger`, once as the same SQL statements issued through
the DB-API cursor of the same connection (the floor). The floors mirror, one
for one, the statements the ledger issues; the statements of one ledger credit
and one debit are captured and written to the JSON next to the figures, and
every floor is counted, so a ledger that grows an extra query shows up both in
its ratio and in its statement count.

- credit: `ledger.credit` on many accounts (round robin). Floor: BEGIN; lock the
  account (FOR NO KEY UPDATE on PostgreSQL); INSERT the entry RETURNING id;
  INSERT the lot; UPDATE the account; COMMIT.
- debit: `ledger.debit` on accounts each holding 100 lots, every debit spanning
  two lots. Floor: the same as credit, plus the running-sum query for the lots
  needed, the UPDATE of those lots and the INSERT of the allocations.
- expire: `ledger.expire_due_lots` over N due lots (about 10 per account), on the
  job's default number of connections (`ledger.EXPIRY_WORKERS` on PostgreSQL).
  Floor: the job's set-based batches executed raw, on as many connections.
- reconcile: `ledger.reconcile` over every entry the run made. Floor: the very
  statements it issued, replayed raw.

Credits and debits run in interleaved rounds (floor, ours, ours, floor, ...) so
a machine that gets busier halfway through does not skew the ratio. The data is
bulk-loaded with set-based `INSERT ... SELECT` over `generate_series` (a
recursive CTE on SQLite), consistent enough that reconcile is clean; the run
ends by checking that it is.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loyalty import ledger
from loyalty.benchmarks.base import Measurement, RawSQL, RowInsert, bulk_load, checkpoint, insert_select
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, Member, PointAllocation, PointLot, PointsAccount, Program

ACTOR = Actor.job("benchmark")
LEDGER_MODELS = (Program, Member, PointsAccount, LedgerEntry, PointLot, PointAllocation)
Kind = LedgerEntry.Kind
Source = LedgerEntry.Source

CREDIT_ACCOUNTS = 1_000  # credits are spread round robin over at most this many accounts
LOTS_PER_DEBIT_ACCOUNT = 100
DEBITS_PER_ACCOUNT = 10
POINTS_PER_LOT = 100
DEBIT_POINTS = 150  # one and a half lots: every debit takes what is left of one lot and part of the next
EXPIRY_LOTS_PER_ACCOUNT = 10
EXPIRY_BATCH_SIZE = ledger.EXPIRY_BATCH_SIZE  # the job's default
EXPIRY_WORKERS = ledger.EXPIRY_WORKERS  # the job's default connections, and the floor's
ROUNDS = 10
# The floor does not hash the request; the ledger stores a SHA-256 hex digest.
FINGERPRINT = "f" * 64

# The targets, stated for PostgreSQL.
CREDIT_RATIO_TARGET = 0.5
EXPIRY_TARGET_LOTS = 1_000_000
EXPIRY_TARGET_SECONDS = 15.0


@dataclass(frozen=True)
class Counts:
    credits: int
    debits: int
    lots: int


SCALES: dict[str, dict[str, Counts]] = {
    "small": {"postgresql": Counts(200, 100, 2_000), "sqlite": Counts(200, 100, 2_000)},
    "full": {"postgresql": Counts(10_000, 5_000, 1_000_000), "sqlite": Counts(5_000, 2_500, 100_000)},
}


def default_counts(scale: str, vendor: str) -> Counts:
    return SCALES[scale].get(vendor, SCALES[scale]["postgresql"])


@dataclass
class LedgerReport:
    measurements: list[Measurement]
    setup_seconds: float
    problems: list[str] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    sql: dict[str, list[str]] = field(default_factory=dict)


OPERATIONS = ("credit", "debit", "expire", "reconcile")


def run(
    counts: Counts, *, log: Callable[[str], None] = lambda message: None, only: list[str] | None = None
) -> LedgerReport:
    """Run the benchmark (the operations in `only`, default all) on `connection`, which must be
    a throwaway database."""
    return _LedgerBenchmark(counts, log, only).run()


def _chunks(count: int, rounds: int) -> list[range]:
    size = math.ceil(count / rounds)
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


class _Counter:
    """An execute wrapper that counts and times the statements our code sends, by their first
    three words, and keeps the first few. Several connections (the expiry job's workers) may
    share one."""

    def __init__(self, keep: int = 8):
        self.statements = 0
        self.lots = 0
        self.keep = keep
        self.sql: list[str] = []
        self.seconds: dict[str, float] = {}
        self.lock = threading.Lock()

    def __call__(self, execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.add(sql, time.perf_counter() - began)

    def add(self, sql: str, seconds: float = 0.0, lots: int = 0) -> None:
        """One statement sent (none when `sql` is empty), and the lots it expired."""
        kind = " ".join(sql.split()[:3])
        with self.lock:
            self.lots += lots
            if not sql:
                return
            # SQLite's BEGIN IMMEDIATE goes through a cursor; transaction control is not counted.
            self.statements += _statements([sql])
            if len(self.sql) < self.keep:
                self.sql.append(sql)
            self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds

    def breakdown(self, total: float, connections: int = 1) -> dict[str, float]:
        """Seconds per kind of statement, summed over `connections` working for `total` seconds
        each; the rest is commits (with their deferred checks), Python and waiting."""
        out = {kind: round(seconds, 3) for kind, seconds in self.seconds.items()}
        out["commits and Python"] = round(total * connections - sum(self.seconds.values()), 3)
        return out


class _LedgerBenchmark:
    def __init__(self, counts: Counts, log: Callable[[str], None], only: list[str] | None = None):
        self.counts = counts
        self.log = log
        self.only = [operation for operation in OPERATIONS if operation in (only or OPERATIONS)]
        self.raw = RawSQL(connection)
        self.report = LedgerReport(measurements=[], setup_seconds=0.0)
        self.start = timezone.now()

    # --- The run -------------------------------------------------------------------

    def run(self) -> LedgerReport:
        tables = set(connection.introspection.table_names())
        missing = [m._meta.db_table for m in LEDGER_MODELS if m._meta.db_table not in tables]
        if missing:
            raise RuntimeError(
                f"The throwaway database has no {', '.join(missing)} table: it was not set up."
            )
        began = time.perf_counter()
        self._set_up()
        self.report.setup_seconds = time.perf_counter() - began
        self._prepare_floor_sql()
        measure = {
            "credit": self._credits,
            "debit": self._debits,
            "expire": self._expiry,
            "reconcile": self._reconcile,
        }
        self.report.measurements += [measure[operation]() for operation in self.only]
        if "reconcile" not in self.only:
            # Not timed, but a run that left the books wrong still fails.
            discrepancies = ledger.reconcile()
            if discrepancies:
                self.report.problems.append(f"reconcile found {len(discrepancies):,} discrepancies")
        self._judge_targets()
        return self.report

    def _timed(self, fn, *args) -> float:
        began = time.perf_counter()
        fn(*args)
        return time.perf_counter() - began

    # --- Data ------------------------------------------------------------------------

    def _set_up(self) -> None:
        counts, start = self.counts, self.start
        credit_accounts = min(CREDIT_ACCOUNTS, counts.credits)
        debit_accounts = math.ceil(counts.debits / DEBITS_PER_ACCOUNT)
        expiry_accounts = math.ceil(counts.lots / EXPIRY_LOTS_PER_ACCOUNT)
        self.accounts: dict[str, list[tuple[int, int]]] = {}
        every_cohort = [
            # label, accounts, lots, lots expire at start + offset, minutes between an account's lots
            ("credit-ours", credit_accounts, 0, None, 0),
            ("credit-floor", credit_accounts, 0, None, 0),
            (
                "debit-ours",
                debit_accounts,
                debit_accounts * LOTS_PER_DEBIT_ACCOUNT,
                timedelta(days=1),
                24 * 60,
            ),
            (
                "debit-floor",
                debit_accounts,
                debit_accounts * LOTS_PER_DEBIT_ACCOUNT,
                timedelta(days=1),
                24 * 60,
            ),
            # The floor's lots fall due a day before ours, so each expiry run takes
            # exactly its own lots out of one shared table.
            ("expire-ours", expiry_accounts, counts.lots, timedelta(hours=-12), -1),
            ("expire-floor", expiry_accounts, counts.lots, timedelta(hours=-36), -1),
        ]
        cohorts = [cohort for cohort in every_cohort if cohort[0].split("-")[0] in self.only]
        with bulk_load(connection, [Member, PointsAccount, LedgerEntry, PointLot]):
            for label, accounts, lots, expires_in, step in cohorts:
                began = time.perf_counter()
                program = Program.objects.create(
                    name=f"Benchmark {label}",
                    slug=f"bench-{label}",
                    expiry_policy=Program.ExpiryPolicy.MONTHS_AFTER_EARN,
                    expiry_months=12,
                    pending_days=0,
                )
                expires_at = start + expires_in if expires_in is not None else None
                self._cohort(program, accounts, lots, expires_at, step)
                self.accounts[label] = list(
                    PointsAccount.objects.filter(program=program)
                    .order_by("pk")
                    .values_list("pk", "program_id")
                )
                self.log(
                    f"set up {label}: {accounts:,} accounts, {lots:,} lots "
                    f"({time.perf_counter() - began:.1f} s)"
                )
            began = time.perf_counter()
        self.log(f"indexes built ({time.perf_counter() - began:.1f} s)")
        began = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE" if self.raw.postgres else "ANALYZE")
        self.log(f"analyzed ({time.perf_counter() - began:.1f} s)")

    def _cohort(self, program: Program, accounts: int, lots: int, expires_at: datetime | None, step: int):
        """`accounts` members with an account each, and `lots` lots of `POINTS_PER_LOT` points
        dealt round robin over them, each from its own earn entry, balances to match."""
        raw, when = self.raw, self.raw.when
        earned_at = self.start - timedelta(days=400) if lots else self.start
        insert_select(
            connection,
            Member,
            {
                "program": ("%s", [program.pk]),
                "membership_number": ("CAST(%s + s.n AS TEXT)", [program.pk * 10**9]),
                "first_name": ("%s", ["Bench"]),
                "last_name": ("%s", ["Member"]),
                "email": ("%s", [""]),
                "phone": ("%s", [""]),
                "created_at": ("%s", [when(self.start)]),
            },
            raw.series(),
            [accounts - 1],
        )
        balance = ("((%s - 1 - m.k) / %s + 1) * %s", [lots, accounts, POINTS_PER_LOT]) if lots else ("0", [])
        insert_select(
            connection,
            PointsAccount,
            {
                "member": ("m.id", []),
                "program": ("m.program_id", []),
                "balance": balance,
                "pending": ("0", []),
                "lifetime_earned": balance,
                "lifetime_redeemed": ("0", []),
                "lifetime_expired": ("0", []),
                "updated_at": ("%s", [when(earned_at)]),
            },
            "(SELECT id, program_id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS k FROM loyalty_member "
            "WHERE program_id = %s) AS m",
            [program.pk],
        )
        if not lots:
            return
        # Lot n goes to account n % accounts; it is that account's (n // accounts + 1)th,
        # so its entry's balance_after is the running sum, and ids follow n.
        insert_select(
            connection,
            LedgerEntry,
            {
                "program": ("a.program_id", []),
                "account": ("a.id", []),
                "kind": ("%s", [Kind.EARN]),
                "points": ("%s", [POINTS_PER_LOT]),
                "pending_points": ("0", []),
                "balance_after": ("(s.n / %s + 1) * %s", [accounts, POINTS_PER_LOT]),
                "pending_after": ("0", []),
                "occurred_at": ("%s", [when(earned_at)]),
                "posted_at": ("%s", [when(earned_at)]),
                "source": ("%s", [Source.IMPORT]),
                "reference": ("%s", [""]),
                "idempotency_key": ("%s || CAST(s.n AS TEXT)", ["seed:"]),
                "fingerprint": ("%s", [""]),
                "reason": ("%s", ["Benchmark data"]),
                "actor_label": ("%s", [ACTOR.label]),
            },
            f"{raw.series()} JOIN (SELECT id, program_id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS k "
            "FROM loyalty_pointsaccount WHERE program_id = %s) AS a ON a.k = s.n %% %s ORDER BY s.n",
            [lots - 1, program.pk, accounts],
        )
        insert_select(
            connection,
            PointLot,
            {
                "account": ("e.account_id", []),
                "entry": ("e.id", []),
                "original": ("e.points", []),
                "remaining": ("e.points", []),
                "expired": ("0", []),
                "pending": ("%s", [False]),
                "available_from": ("e.occurred_at", []),
                "expires_at": (
                    raw.plus_minutes("%s", "(e.balance_after / %s - 1) * %s"),
                    [when(expires_at), POINTS_PER_LOT, step],
                ),
            },
            "loyalty_ledgerentry e WHERE e.program_id = %s ORDER BY e.id",
            [program.pk],
        )

    # --- Floors' SQL -----------------------------------------------------------------

    def _prepare_floor_sql(self) -> None:
        raw = self.raw
        # What Django sends to open a transaction (SQLite may be told BEGIN IMMEDIATE).
        mode = getattr(connection, "transaction_mode", None) if raw.vendor == "sqlite" else None
        self.begin_sql = f"BEGIN {mode}" if mode else "BEGIN"
        self.lock_sql = raw(
            "SELECT a.balance, a.pending, a.lifetime_earned, a.lifetime_redeemed, a.lifetime_expired, "
            "a.*, p.* FROM loyalty_pointsaccount a JOIN loyalty_program p ON p.id = a.program_id "
            "WHERE a.id = %s" + raw.lock("a")
        )
        self.entry_insert = RowInsert(
            raw,
            LedgerEntry,
            (
                "program",
                "account",
                "kind",
                "points",
                "balance_after",
                "pending_after",
                "occurred_at",
                "posted_at",
                "source",
                "reference",
                "idempotency_key",
                "fingerprint",
                "reason",
                "actor_label",
            ),
        )
        self.lot_insert = RowInsert(
            raw,
            PointLot,
            ("account", "entry", "original", "remaining", "pending", "available_from", "expires_at"),
        )
        self.allocation_inserts: dict[int, RowInsert] = {}
        self.save_sql = raw(
            "UPDATE loyalty_pointsaccount SET balance = %s, pending = %s, lifetime_earned = %s, "
            "lifetime_redeemed = %s, lifetime_expired = %s, updated_at = %s WHERE id = %s"
        )
        self.lots_needed_sql = raw(
            "SELECT id, remaining FROM (SELECT id, remaining, expires_at, "
            "SUM(remaining) OVER (ORDER BY expires_at ASC NULLS LAST, id ASC) - remaining AS before "
            "FROM loyalty_pointlot WHERE account_id = %s AND NOT pending AND remaining > 0) AS live "
            "WHERE before < %s ORDER BY expires_at ASC NULLS LAST, id ASC"
        )
        self.take_sql: dict[int, str] = {}

    def _allocation_insert(self, rows: int) -> RowInsert:
        if rows not in self.allocation_inserts:
            self.allocation_inserts[rows] = RowInsert(
                self.raw, PointAllocation, ("entry", "lot", "points", "created_at"), rows=rows
            )
        return self.allocation_inserts[rows]

    def _take_sql(self, lots: int) -> str:
        if lots not in self.take_sql:
            self.take_sql[lots] = self.raw(
                "UPDATE loyalty_pointlot SET remaining = CASE WHEN id = %s THEN remaining - %s ELSE %s END "
                f"WHERE id IN ({', '.join(['%s'] * lots)})"
            )
        return self.take_sql[lots]

    # --- Credits -----------------------------------------------------------------------

    def _credits(self) -> Measurement:
        count = self.counts.credits
        ours = [
            PointsAccount(pk=pk, program_id=program_id) for pk, program_id in self.accounts["credit-ours"]
        ]
        floor = self.accounts["credit-floor"]
        with CaptureQueriesContext(connection) as captured:
            self._our_credit(ours[0], points=POINTS_PER_LOT, key="bench:credit:capture")
        self._floor_credits(range(1), floor, key="floor:credit:warm-up:")
        seconds = floor_seconds = 0.0
        for index, chunk in enumerate(_chunks(count, ROUNDS)):
            if index % 2:
                seconds += self._timed(self._our_credits, chunk, ours)
                floor_seconds += self._timed(self._floor_credits, chunk, floor)
            else:
                floor_seconds += self._timed(self._floor_credits, chunk, floor)
                seconds += self._timed(self._our_credits, chunk, ours)
        sql = [q["sql"] for q in captured.captured_queries]
        self.report.sql["credit"] = sql
        self.log(f"credit: {count:,} in {seconds:.2f} s, floor {floor_seconds:.2f} s")
        return Measurement(
            "credit",
            count,
            seconds,
            floor_seconds,
            statements=_statements(sql),
            floor_statements=4,
            notes={"accounts": len(ours)},
        )

    def _our_credit(self, account: PointsAccount, *, points: int, key: str) -> None:
        ledger.credit(
            account=account,
            points=points,
            reason="Purchase",
            actor=ACTOR,
            idempotency_key=key,
            source=Source.API,
        )

    def _our_credits(self, chunk: range, accounts: list[PointsAccount]) -> None:
        n = len(accounts)
        for i in chunk:
            self._our_credit(accounts[i % n], points=10 + i % 90, key=f"bench:credit:{i}")

    def _floor_credits(
        self, chunk: range, accounts: list[tuple[int, int]], key: str = "floor:credit:"
    ) -> None:
        now = timezone.now()
        at, expires = self.raw.when(now), self.raw.when(ledger.add_months(now, 12))
        begin, lock_sql, save_sql = self.begin_sql, self.lock_sql, self.save_sql
        entry, lot = self.entry_insert, self.lot_insert
        n = len(accounts)
        cursor = self.raw.driver_cursor()
        for i in chunk:
            account_id, program_id = accounts[i % n]
            points = 10 + i % 90
            cursor.execute(begin)
            cursor.execute(lock_sql, (account_id,))
            balance, pending, earned, redeemed, expired = cursor.fetchone()[:5]
            balance += points
            earned += points
            cursor.execute(
                entry.sql,
                entry.params(
                    (
                        program_id,
                        account_id,
                        Kind.EARN.value,
                        points,
                        balance,
                        pending,
                        at,
                        at,
                        Source.API.value,
                        "",
                        f"{key}{i}",
                        FINGERPRINT,
                        "Purchase",
                        ACTOR.label,
                    )
                ),
            )
            entry_id = cursor.fetchone()[0]
            cursor.execute(lot.sql, lot.params((account_id, entry_id, points, points, False, at, expires)))
            cursor.fetchone()
            cursor.execute(save_sql, (balance, pending, earned, redeemed, expired, at, account_id))
            cursor.execute("COMMIT")
        cursor.close()

    # --- Debits ------------------------------------------------------------------------

    def _debits(self) -> Measurement:
        count = self.counts.debits
        ours = [PointsAccount(pk=pk, program_id=program_id) for pk, program_id in self.accounts["debit-ours"]]
        floor = self.accounts["debit-floor"]
        # The capture and the warm-up take from the last account, which the timed
        # rounds reach least often (the counts rarely fill it).
        with CaptureQueriesContext(connection) as captured:
            self._our_debit(ours[-1], key="bench:debit:capture")
        self._floor_debits(range(1), floor[-1:], key="floor:debit:warm-up:")
        seconds = floor_seconds = 0.0
        for index, chunk in enumerate(_chunks(count, ROUNDS)):
            if index % 2:
                seconds += self._timed(self._our_debits, chunk, ours)
                floor_seconds += self._timed(self._floor_debits, chunk, floor)
            else:
                floor_seconds += self._timed(self._floor_debits, chunk, floor)
                seconds += self._timed(self._our_debits, chunk, ours)
        sql = [q["sql"] for q in captured.captured_queries]
        self.report.sql["debit"] = sql
        self.log(f"debit: {count:,} in {seconds:.2f} s, floor {floor_seconds:.2f} s")
        return Measurement(
            "debit",
            count,
            seconds,
            floor_seconds,
            statements=_statements(sql),
            floor_statements=6,
            notes={"accounts": len(ours), "lots_per_account": LOTS_PER_DEBIT_ACCOUNT, "points": DEBIT_POINTS},
        )

    def _our_debit(self, account: PointsAccount, *, key: str) -> None:
        ledger.debit(
            account=account,
            points=DEBIT_POINTS,
            reason="Redemption",
            actor=ACTOR,
            idempotency_key=key,
            source=Source.API,
        )

    def _our_debits(self, chunk: range, accounts: list[PointsAccount]) -> None:
        n = len(accounts)
        for i in chunk:
            self._our_debit(accounts[i % n], key=f"bench:debit:{i}")

    def _floor_debits(self, chunk: range, accounts: list[tuple[int, int]], key: str = "floor:debit:") -> None:
        at = self.raw.when(timezone.now())
        begin, lock_sql, save_sql = self.begin_sql, self.lock_sql, self.save_sql
        needed_sql = self.lots_needed_sql
        entry = self.entry_insert
        n, points = len(accounts), DEBIT_POINTS
        cursor = self.raw.driver_cursor()
        for i in chunk:
            account_id, program_id = accounts[i % n]
            cursor.execute(begin)
            cursor.execute(lock_sql, (account_id,))
            balance, pending, earned, redeemed, expired = cursor.fetchone()[:5]
            balance -= points
            redeemed += points
            cursor.execute(
                entry.sql,
                entry.params(
                    (
                        program_id,
                        account_id,
                        Kind.REDEEM.value,
                        -points,
                        balance,
                        pending,
                        at,
                        at,
                        Source.API.value,
                        "",
                        f"{key}{i}",
                        FINGERPRINT,
                        "Redemption",
                        ACTOR.label,
                    )
                ),
            )
            entry_id = cursor.fetchone()[0]
            cursor.execute(needed_sql, (account_id, points))
            lots = cursor.fetchall()
            allocations, left = [], points
            for lot_id, remaining in lots:
                take = min(left, remaining)
                allocations.append((entry_id, lot_id, take, at))
                left -= take
            last_lot, last_take = allocations[-1][1], allocations[-1][2]
            cursor.execute(self._take_sql(len(lots)), (last_lot, last_take, 0, *(lot for lot, _ in lots)))
            insert = self._allocation_insert(len(allocations))
            cursor.execute(insert.sql, insert.params(*allocations))
            cursor.fetchall()
            cursor.execute(save_sql, (balance, pending, earned, redeemed, expired, at, account_id))
            cursor.execute("COMMIT")
        cursor.close()

    # --- Expiry ------------------------------------------------------------------------

    def _expiry(self) -> Measurement:
        lots = self.counts.lots
        floor_now, our_now = self.start - timedelta(hours=24), self.start
        floor_counter = _Counter()
        # Before each run, so neither pays for the load's pages or the other run's.
        checkpoint(self.log, "the expiry runs")
        floor_seconds = self._timed(self._floor_expire, floor_now, floor_counter)
        self.log(f"expire floor: {floor_counter.lots:,} lots in {floor_seconds:.2f} s")
        # The floor's updates leave dead rows; clear them so both runs meet the same table.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE" if self.raw.postgres else "ANALYZE")
        checkpoint(self.log, "the expiry runs")
        counter = _Counter()
        began = time.perf_counter()
        with connection.execute_wrapper(counter):
            result = ledger.expire_due_lots(now=our_now, batch_size=EXPIRY_BATCH_SIZE, workers=self.workers)
        seconds = time.perf_counter() - began
        self.log(f"expire: {result.lots:,} lots in {seconds:.2f} s")
        self.report.sql["expire"] = counter.sql
        for who, expired in (
            ("ledger.expire_due_lots", result.lots),
            ("the expiry floor", floor_counter.lots),
        ):
            if expired != lots:
                self.report.problems.append(f"{who} expired {expired:,} lots, expected {lots:,}.")
        return Measurement(
            "expire",
            lots,
            seconds,
            floor_seconds,
            statements=counter.statements,
            floor_statements=floor_counter.statements,
            statements_per="run",
            notes={
                "accounts": result.accounts,
                "batch_size": EXPIRY_BATCH_SIZE,
                "workers": self.workers,
                "seconds_by_statement": counter.breakdown(seconds, self.workers),
            },
        )

    @property
    def workers(self) -> int:
        """Connections expiry runs on, ours and the floor's alike: the job's default on PostgreSQL;
        elsewhere the job runs its batches one by one."""
        return EXPIRY_WORKERS if self.raw.postgres else 1

    def _floor_expire(self, now: datetime, counter: _Counter) -> None:
        """`ledger.expire_due_lots` as raw statements: batches of accounts with due lots, each one
        transaction that locks them, inserts one expiry entry per account and updates lots and
        accounts from the entries it got back. On PostgreSQL the batches run on as many
        connections at once as the job's (with the job's thread pool, each connection's raw
        driver cursor sending the statements)."""
        raw = self.raw
        at = raw.when(now)
        due = "l.pending = %s AND l.remaining > 0 AND l.expires_at IS NOT NULL AND l.expires_at <= %s"
        breakdown = "'{\"lots\": ' || CAST(COUNT(*) AS TEXT) || '}'"
        if raw.postgres:
            breakdown = f"CAST({breakdown} AS jsonb)"
        scan_sql = raw(
            f"SELECT l.account_id FROM loyalty_pointlot l WHERE {due} AND l.account_id > %s "
            "ORDER BY l.account_id LIMIT %s"
        )
        begin = self.begin_sql
        cursor = raw.driver_cursor()

        def batches():
            after = 0
            while True:
                cursor.execute(scan_sql, (False, at, after, EXPIRY_BATCH_SIZE))
                ids = sorted({row[0] for row in cursor.fetchall()})
                counter.add(scan_sql)
                if not ids:
                    return
                after = ids[-1]
                yield ids

        if raw.postgres:

            def run_batch(ids: list[int]) -> None:
                # `raw` reads the connection of the thread it runs on: the worker's own.
                with raw.driver_cursor() as own:
                    lots = self._floor_expire_batch_postgres(own, ids, at)
                for sql in ("SET LOCAL", "SELECT id, balance", "WITH due AS"):
                    counter.add(sql)
                counter.add("", lots=lots)

            if self.workers > 1:
                ledger._run_in_parallel(batches(), run_batch, workers=self.workers)
            else:
                for ids in batches():
                    run_batch(ids)
            cursor.close()
            return
        for ids in batches():
            marks = ", ".join(["%s"] * len(ids))
            cursor.execute(begin)
            cursor.execute(
                raw(f"SELECT id, balance FROM loyalty_pointsaccount WHERE id IN ({marks}) ORDER BY id")
                + raw.lock("loyalty_pointsaccount"),
                ids,
            )
            cursor.fetchall()
            cursor.execute(
                raw(
                    "INSERT INTO loyalty_ledgerentry (program_id, account_id, kind, points, "
                    "pending_points, balance_after, pending_after, occurred_at, posted_at, source, "
                    "reference, idempotency_key, fingerprint, reason, actor_label, breakdown) "
                    "SELECT a.program_id, a.id, %s, -SUM(l.remaining), 0, a.balance - SUM(l.remaining), "
                    "a.pending, MAX(l.expires_at), %s, %s, '', %s || CAST(MIN(l.id) AS TEXT), '', %s, %s, "
                    f"{breakdown} FROM loyalty_pointlot l "
                    "JOIN loyalty_pointsaccount a ON a.id = l.account_id "
                    f"WHERE {due} AND l.account_id IN ({marks}) "
                    "GROUP BY a.id, a.program_id, a.balance, a.pending RETURNING id, account_id, points"
                ),
                [
                    Kind.EXPIRE.value,
                    at,
                    Source.JOB.value,
                    "expire:lot:",
                    "Points reached their expiry date",
                    "job:expire_points",
                    False,
                    at,
                    *ids,
                ],
            )
            created = cursor.fetchall()
            values = ", ".join(
                ["(CAST(%s AS BIGINT), CAST(%s AS BIGINT), CAST(%s AS BIGINT))"] * len(created)
            )
            batch = (
                "(SELECT column1 AS entry_id, column2 AS account_id, column3 AS points "
                f"FROM (VALUES {values}) AS v) AS b"
            )
            batch_params = [value for row in created for value in row]
            cursor.execute(
                raw(
                    "UPDATE loyalty_pointlot AS l SET expired = l.expired + l.remaining, remaining = 0, "
                    f"expiry_entry_id = b.entry_id FROM {batch} WHERE l.account_id = b.account_id AND {due}"
                ),
                [*batch_params, False, at],
            )
            counter.lots += cursor.rowcount
            cursor.execute(
                raw(
                    "UPDATE loyalty_pointsaccount AS a SET balance = a.balance + b.points, "
                    f"lifetime_expired = a.lifetime_expired - b.points, updated_at = %s FROM {batch} "
                    "WHERE a.id = b.account_id"
                ),
                [at, *batch_params],
            )
            cursor.execute("COMMIT")
            counter.statements += 4
        cursor.close()

    def _floor_expire_batch_postgres(self, cursor, ids: list[int], at) -> int:
        """One batch of the job on PostgreSQL, as it sends it: lock the accounts, then the one
        statement that closes the lots and makes the entries and balances from them."""
        cursor.execute(self.begin_sql)
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(
            "SELECT id, balance FROM loyalty_pointsaccount WHERE id = ANY (CAST(%s AS bigint[])) "
            "ORDER BY id FOR NO KEY UPDATE",
            [ids],
        )
        cursor.fetchall()
        cursor.execute(
            ledger._EXPIRE_BATCH_POSTGRES,
            {
                "ids": ids,
                "first": ids[0],
                "last": ids[-1],
                "pending": False,
                "due": at,
                "kind": Kind.EXPIRE.value,
                "now": at,
                "source": Source.JOB.value,
                "key_prefix": "expire:lot:",
                "reason": "Points reached their expiry date",
                "actor": "job:expire_points",
            },
        )
        lots = sum(row[3] for row in cursor.fetchall())
        cursor.execute("COMMIT")
        return lots

    # --- Reconcile ---------------------------------------------------------------------

    def _reconcile(self) -> Measurement:
        entries = LedgerEntry.objects.count()
        recorded: list[tuple[str, Any]] = []

        def record(execute, sql, params, many, context):
            recorded.append((sql, params))
            return execute(sql, params, many, context)

        # A first run records the statements (and warms the caches for both timed runs).
        with connection.execute_wrapper(record):
            ledger.reconcile()
        self.report.sql["reconcile"] = [sql for sql, _ in recorded]
        statements = [(self.raw(sql), params) for sql, params in recorded]
        # Two rounds each, in alternating order, so cache warmth favours neither.
        seconds = floor_seconds = 0.0
        for first_floor in (True, False):
            if first_floor:
                floor_seconds += self._timed(self._floor_reconcile, statements)
            began = time.perf_counter()
            discrepancies = ledger.reconcile()
            seconds += time.perf_counter() - began
            if not first_floor:
                floor_seconds += self._timed(self._floor_reconcile, statements)
        seconds, floor_seconds = seconds / 2, floor_seconds / 2
        self.log(f"reconcile: {entries:,} entries in {seconds:.2f} s, floor {floor_seconds:.2f} s")
        if discrepancies:
            shown = "; ".join(f"account {d.account_id}: {d.check}" for d in discrepancies[:5])
            self.report.problems.append(f"reconcile found {len(discrepancies):,} discrepancies: {shown}")
        return Measurement(
            "reconcile",
            entries,
            seconds,
            floor_seconds,
            statements=len(recorded),
            floor_statements=len(statements),
            statements_per="run",
            notes={"discrepancies": len(discrepancies)},
        )

    def _floor_reconcile(self, statements: list[tuple[str, Any]]) -> None:
        cursor = self.raw.driver_cursor()
        for sql, params in statements:
            if params is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, params)
            cursor.fetchall()
        cursor.close()

    # --- Targets -----------------------------------------------------------------------

    def _judge_targets(self) -> None:
        by_name = {m.operation: m for m in self.report.measurements}
        applies = self.raw.postgres
        self.report.targets = []
        if "credit" in by_name:
            credit = by_name["credit"]
            self.report.targets.append(
                {
                    "target": f"credit throughput at least {CREDIT_RATIO_TARGET:.0%} of the raw-driver floor",
                    "operation": "credit",
                    "value": round(credit.ratio, 3),
                    "limit": CREDIT_RATIO_TARGET,
                    "met": credit.ratio >= CREDIT_RATIO_TARGET,
                    "applies": applies,
                }
            )
        if "expire" in by_name:
            expire = by_name["expire"]
            projected = expire.seconds * EXPIRY_TARGET_LOTS / expire.count
            self.report.targets.append(
                {
                    "target": f"expire {EXPIRY_TARGET_LOTS:,} lots in under {EXPIRY_TARGET_SECONDS:.0f} s",
                    "operation": "expire",
                    "value": round(projected, 2),
                    "limit": EXPIRY_TARGET_SECONDS,
                    "met": projected < EXPIRY_TARGET_SECONDS,
                    "applies": applies,
                    "projected": expire.count != EXPIRY_TARGET_LOTS,
                }
            )


def _statements(sql: list[str]) -> int:
    """Statements sent, transaction control (BEGIN, COMMIT) aside."""
    control = ("BEGIN", "COMMIT", "ROLLBACK")
    return sum(1 for statement in sql if not statement.strip().upper().startswith(control))
