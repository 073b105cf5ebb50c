"""The ledger's indexes on PostgreSQL: the reports' covering index is used, the expiry write stays cheap."""

from datetime import date

import pytest
from django.db import connection

from agents.supervisor.reports import Period, points_by_month

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("index plans and storage parameters are PostgreSQL's")


def _fill_entries(program, account, count: int) -> None:
    """`count` entries spread over five years, loaded set-based (the test needs rows, not postings)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO loyalty_ledgerentry (program_id, account_id, kind, points, pending_points, "
            "balance_after, pending_after, occurred_at, posted_at, source, reference, idempotency_key, "
            "fingerprint, reason, actor_label, breakdown) "
            "SELECT %s, %s, 'earn', 10, 0, 10 * g, 0, ts, ts, 'system', '', 'index-test:' || g, '', "
            "'index test', 'test', '{}'::jsonb "
            "FROM generate_series(1, %s) g, "
            "LATERAL (SELECT TIMESTAMPTZ '2021-01-01' + g * INTERVAL '15 hours') t(ts)",
            [program.pk, account.pk, count],
        )
        cursor.execute("ANALYZE loyalty_ledgerentry")


def _plans(fn) -> list[str]:
    """EXPLAIN of every SELECT `fn` sends, run for real afterwards."""
    statements = []

    def record(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("SELECT") and "loyalty_ledgerentry" in sql:
            statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        fn()
    plans = []
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(f"EXPLAIN {sql}", params)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    return plans


def test_supervisor_monthly_points_report_scans_the_covering_index(member_a, program_a):
    _fill_entries(program_a, member_a.account, 4_000)
    period = Period(program=program_a, start=date(2022, 3, 1), end=date(2022, 5, 1))
    (plan,) = _plans(lambda: points_by_month(period))
    # (An index-only scan also needs the visibility map, which VACUUM sets: not inside a test.)
    assert "entry_program_posted_cover" in plan, plan


def _lot_indexes_and_keys() -> tuple[dict[str, str], set[str], list[str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'loyalty_pointlot'")
        indexes = dict(cursor.fetchall())
        cursor.execute(
            "SELECT a.attname FROM pg_constraint c JOIN pg_attribute a "
            "ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) "
            "WHERE c.conrelid = 'loyalty_pointlot'::regclass AND c.contype = 'f'"
        )
        foreign_keys = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'loyalty_pointlot'")
        options = cursor.fetchone()[0] or []
    return indexes, foreign_keys, options


def test_expiring_a_lot_writes_no_foreign_key_check_and_no_index_on_expiry_entry():
    indexes, foreign_keys, options = _lot_indexes_and_keys()
    # A deferred foreign key check per expired lot at commit was a quarter of an expiry run;
    # reconcile checks expiry_entry instead (tested in test_ledger.py).
    assert "expiry_entry_id" not in foreign_keys
    assert {"account_id", "entry_id"} <= foreign_keys
    assert not [name for name, definition in indexes.items() if "expiry_entry_id" in definition]
    # Room on each page for the updated version of a lot.
    assert "fillfactor=80" in options
    # The debit path's index is still there.
    assert "remaining > 0" in indexes["lot_live_by_expiry"]


def test_ledger_entries_keep_no_single_column_index_a_composite_one_serves():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'loyalty_ledgerentry'")
        definitions = [row[0] for row in cursor.fetchall()]
    leading = [definition.split("(", 1)[1].split(")")[0] for definition in definitions]
    for column in ("program_id", "account_id", "subject_type_id"):
        assert column not in leading, definitions  # a single-column index on it
        assert any(cols.startswith(f"{column},") for cols in leading), column  # served by a composite
    # Most entries (every job's) have no actor and reverse nothing: those indexes skip them.
    assert any("(actor_id) WHERE (actor_id IS NOT NULL)" in d for d in definitions), definitions
    assert any("(reverses_id) WHERE (reverses_id IS NOT NULL)" in d for d in definitions), definitions


def _plan(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a test table is tiny: ask what an index serves
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    return plan


def test_lots_keep_one_account_index_and_it_serves_every_account_read(member_a):
    from loyalty.models import PointLot

    indexes, _, _ = _lot_indexes_and_keys()
    # Every index on the lot table costs each lot the expiry job closes an insert.
    assert not [d for d in indexes.values() if d.endswith("(account_id)")], indexes
    assert "WHERE" not in indexes["lot_account_recent"]
    account = member_a.account
    live = PointLot.objects.filter(account=account, pending=False, remaining__gt=0).order_by(
        "expires_at", "id"
    )
    closed = PointLot.objects.filter(account=account, remaining=0).order_by("-id")[:10]
    pending = PointLot.objects.filter(account=account, pending=True)
    everything = PointLot.objects.filter(account__member__membership_number=member_a.membership_number)
    assert "lot_live_by_expiry" in _plan(live)
    assert "lot_account_recent" in _plan(closed)
    assert "lot_account_pending" in _plan(pending)
    assert "lot_account_recent" in _plan(everything)  # the admin's search by member
