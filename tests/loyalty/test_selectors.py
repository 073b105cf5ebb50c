"""Reads behind the agent's screens: search, the member overview, explain, dates and history."""

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loyalty import ledger, selectors
from loyalty.ledger import Actor, InsufficientPoints, NothingToReverse
from loyalty.models import Member, Program
from loyalty.services import member_create

JOB = Actor.job("test")
T0 = datetime(2025, 1, 6, 10, 0, tzinfo=UTC)


@pytest.fixture
def account(member_a):
    return member_a.account


def earn(account, points, key, now=T0, **kwargs):
    kwargs.setdefault("reason", "Purchase")
    return ledger.credit(
        account=account, points=points, actor=JOB, idempotency_key=key, source="api", now=now, **kwargs
    )


def redeem(account, points, key, now=T0):
    return ledger.debit(
        account=account, points=points, reason="Reward", actor=JOB, idempotency_key=key, source="api", now=now
    )


def explain(account, **kwargs):
    account.refresh_from_db()
    return selectors.balance_explanation(account=account, **kwargs)


def assert_adds_up(account, **kwargs):
    explanation = explain(account, **kwargs)
    assert explanation.adds_up, explanation
    assert explanation.available_total == max(account.balance, 0)
    assert explanation.pending_total == account.pending
    assert explanation.debt == max(-account.balance, 0)
    if not explanation.live_lots_not_shown:
        shown = explanation.available_lots + explanation.pending_lots
        assert sum(lot.remaining for lot in explanation.available_lots) == explanation.available_total
        assert sum(lot.remaining for lot in explanation.pending_lots) == explanation.pending_total
        for lot in shown:
            # What is left is what came in, less what went out, plus what came back.
            assert lot.remaining == lot.original + sum(m.signed_points for m in lot.movements)
    return explanation


# --- Explain this balance ------------------------------------------------------------


def test_explain_traces_spending_to_the_soonest_expiring_lots(account):
    first = earn(account, 100, "p1", expires_at=T0 + timedelta(days=30), reference="ORDER-1")
    earn(account, 50, "p2", expires_at=T0 + timedelta(days=60))
    spend = redeem(account, 120, "r1")
    explanation = assert_adds_up(account, now=T0)
    assert explanation.balance == 30
    (lot,) = explanation.available_lots
    assert (lot.original, lot.remaining, lot.status) == (50, 30, "available")
    assert [(m.what, m.points, m.entry_id) for m in lot.movements] == [("spent", 20, spend.entry.pk)]
    (closed,) = explanation.closed_lots
    assert (closed.entry_id, closed.reference, closed.status) == (first.entry.pk, "ORDER-1", "used")
    assert [(m.what, m.points, m.entry_kind, m.reason) for m in closed.movements] == [
        ("spent", 100, "redeem", "Reward")
    ]


def test_explain_shows_points_a_refund_put_back(account):
    earn(account, 100, "p1", expires_at=T0 + timedelta(days=30))
    earn(account, 50, "p2", expires_at=T0 + timedelta(days=60))
    spend = redeem(account, 120, "r1")
    ledger.refund(
        entry=spend.entry, reason="Cancelled", actor=JOB, idempotency_key="f1", source="api", now=T0
    )
    explanation = assert_adds_up(account, now=T0)
    assert explanation.balance == 150
    assert explanation.closed_lots == []
    movements = {
        lot.original: [(m.what, m.points) for m in lot.movements] for lot in explanation.available_lots
    }
    assert movements == {100: [("spent", 100), ("returned", 100)], 50: [("spent", 20), ("returned", 20)]}


def test_explain_shows_expired_lots_with_their_expiry_entry(account):
    earn(account, 100, "old", now=T0 - timedelta(days=400))  # 12 months: expired 35 days ago
    redeem(account, 40, "r1", now=T0 - timedelta(days=390))
    earn(account, 30, "new", now=T0)
    report = ledger.expire_due_lots(now=T0)
    explanation = assert_adds_up(account, now=T0)
    assert explanation.balance == 30
    (closed,) = explanation.closed_lots
    assert (closed.status, closed.expired, closed.remaining) == ("expired", 60, 0)
    assert [(m.what, m.points) for m in closed.movements] == [("spent", 40), ("expired", 60)]
    assert closed.movements[-1].entry_id == report.entries[0]


def test_explain_counts_points_past_expiry_the_job_has_not_taken_yet(account):
    earn(account, 100, "old", now=T0 - timedelta(days=400))
    explanation = assert_adds_up(account, now=T0)
    assert (explanation.balance, explanation.overdue) == (100, 100)


def test_explain_separates_pending_points(account, program_a):
    earn(account, 20, "p0")
    program_a.pending_days = 14
    program_a.save()
    earn(account, 80, "p1")
    explanation = assert_adds_up(account, now=T0)
    assert (explanation.balance, explanation.pending) == (20, 80)
    (pending,) = explanation.pending_lots
    assert pending.status == "pending"
    assert pending.available_from == T0 + timedelta(days=14)
    ledger.activate_pending_lots(now=T0 + timedelta(days=15))
    explanation = assert_adds_up(account, now=T0 + timedelta(days=15))
    assert (explanation.balance, explanation.pending, explanation.pending_lots) == (100, 0, [])


def test_explain_shows_a_negative_balance_as_a_debt_paid_off_by_the_next_credit(account, program_a):
    program_a.negative_balance_policy = Program.NegativeBalancePolicy.ALLOW_DEBT
    program_a.save()
    earn(account, 20, "p1")
    ledger.adjust(
        account=account,
        points=-50,
        reason="Fraudulent order",
        actor=JOB,
        idempotency_key="a1",
        allow_debt=True,
    )
    explanation = assert_adds_up(account, now=T0)
    assert (explanation.balance, explanation.debt, explanation.available_lots) == (-30, 30, [])
    credit = earn(account, 100, "p2")
    explanation = assert_adds_up(account, now=T0)
    assert explanation.balance == 70
    (lot,) = explanation.available_lots
    assert [(m.what, m.points, m.entry_id) for m in lot.movements] == [("settled_debt", 30, credit.entry.pk)]


def test_explain_shows_a_credit_taken_back_by_a_reversal(account):
    credit = earn(account, 100, "p1")
    ledger.reverse(
        entry=credit.entry,
        points=40,
        reason="Item returned",
        actor=JOB,
        idempotency_key="v1",
        source="api",
        now=T0,
    )
    explanation = assert_adds_up(account, now=T0)
    (lot,) = explanation.available_lots
    assert [(m.what, m.points, m.reason) for m in lot.movements] == [("taken_back", 40, "Item returned")]


def test_explain_shows_a_pending_credit_taken_back(account, program_a):
    program_a.pending_days = 14
    program_a.save()
    credit = earn(account, 100, "p1")
    ledger.reverse(
        entry=credit.entry, reason="Order cancelled", actor=JOB, idempotency_key="v1", source="api"
    )
    explanation = assert_adds_up(account, now=T0)
    (closed,) = explanation.closed_lots
    assert [(m.what, m.points) for m in closed.movements] == [("taken_back", 100)]


def test_explain_limits_closed_lots_to_the_most_recent(account):
    for i in range(5):
        earn(account, 10, f"p{i}", now=T0 + timedelta(hours=i))
        redeem(account, 10, f"r{i}", now=T0 + timedelta(hours=i))
    explanation = assert_adds_up(account, closed_limit=3, now=T0)
    assert explanation.more_closed_lots
    assert not explain(account, closed_limit=5, now=T0).more_closed_lots
    assert [lot.reason for lot in explanation.closed_lots] == ["Purchase"] * 3
    assert [lot.earned_at.hour for lot in explanation.closed_lots] == [14, 13, 12]


def test_explain_totals_add_up_when_live_lots_are_cut_off(account):
    for i in range(6):
        earn(account, 10, f"p{i}", expires_at=T0 + timedelta(days=10 + i))
    explanation = assert_adds_up(account, live_limit=4, now=T0)
    assert (len(explanation.available_lots), explanation.live_lots_not_shown) == (4, 2)
    assert explanation.available_total == 60


def _explain_queries(account) -> int:
    with CaptureQueriesContext(connection) as captured:
        selectors.balance_explanation(account=account, now=T0)
    return len(captured.captured_queries)


def test_explain_runs_the_same_queries_for_a_short_or_long_history(member_a, member_b):
    earn(member_a.account, 10, "a1")
    for i in range(60):
        earn(member_b.account, 10, f"b{i}", expires_at=T0 + timedelta(days=i + 1))
        if i % 2:
            redeem(member_b.account, 15, f"r{i}")
    ledger.expire_due_lots(now=T0 + timedelta(days=100))
    # Five queries, and a sixth for the expiry entries when some lot has expired.
    assert (_explain_queries(member_a.account), _explain_queries(member_b.account)) == (5, 6)


def test_explain_adds_up_after_a_random_mix_of_operations(account, program_a):
    program_a.negative_balance_policy = Program.NegativeBalancePolicy.ALLOW_DEBT
    program_a.pending_days = 3
    program_a.expiry_months = 2
    program_a.save()
    rng = random.Random(20250106)
    now, debits, credits = T0, [], []
    for step in range(120):
        now += timedelta(hours=rng.randint(1, 48))
        account.refresh_from_db()
        op = rng.choice(["earn", "earn", "bonus", "redeem", "adjust_down", "refund", "reverse", "jobs"])
        key = f"{op}-{step}"
        try:
            if op in ("earn", "bonus"):
                credits.append(earn(account, rng.randint(1, 200), key, now=now, kind=op).entry)
            elif op == "redeem":
                debits.append(redeem(account, rng.randint(1, 150), key, now=now).entry)
            elif op == "adjust_down":
                ledger.adjust(
                    account=account,
                    points=-rng.randint(1, 100),
                    reason="Correction",
                    actor=JOB,
                    idempotency_key=key,
                    allow_debt=True,
                    now=now,
                )
            elif op == "refund" and debits:
                entry = debits.pop(rng.randrange(len(debits)))
                ledger.refund(
                    entry=entry, reason="Cancelled", actor=JOB, idempotency_key=key, source="api", now=now
                )
            elif op == "reverse" and credits:
                entry = credits.pop(rng.randrange(len(credits)))
                ledger.reverse(
                    entry=entry,
                    reason="Returned",
                    actor=JOB,
                    idempotency_key=key,
                    source="api",
                    allow_debt=True,
                    now=now,
                )
            elif op == "jobs":
                ledger.activate_pending_lots(now=now)
                ledger.expire_due_lots(now=now)
        except (InsufficientPoints, NothingToReverse):
            pass
        assert_adds_up(account, now=now)
    assert ledger.reconcile() == []
    assert account.entries.count() > 80


# --- The member overview ----------------------------------------------------------------


def test_overview_sums_points_expiring_within_30_60_90_days(account):
    now = timezone.now()
    for days, points in [(-1, 7), (10, 1), (30, 2), (31, 4), (60, 8), (89, 16), (91, 32)]:
        earn(account, points, f"d{days}", now=now - timedelta(days=1), expires_at=now + timedelta(days=days))
    earn(account, 64, "never", now=now - timedelta(days=1), expires_at=None)
    redeem(account, 1, "r1", now=now)  # takes the overdue lot's first point
    overview = selectors.member_overview(account=account, now=now)
    assert overview.expiring == {30: 3, 60: 15, 90: 31}
    assert overview.overdue == 6


def test_overview_lists_upcoming_pending_points_and_the_latest_entries(account, program_a):
    program_a.pending_days = 10
    program_a.save()
    now = timezone.now()
    for i in range(7):
        earn(account, 10 + i, f"p{i}", now=now - timedelta(days=i))
    overview = selectors.member_overview(account=account, now=now, recent=3, pending_limit=5)
    assert [lot.points for lot in overview.pending_lots] == [16, 15, 14, 13, 12]
    assert overview.more_pending_lots
    assert [entry.pending_points for entry in overview.recent_entries] == [16, 15, 14]


# --- Search --------------------------------------------------------------------------


@pytest.fixture
def people(program_a):
    return {
        "dana": member_create(
            program=program_a,
            first_name="Dana",
            last_name="Scully",
            email="dana@fbi.gov",
            phone="+1 (202) 555-0143",
        ),
        "fox": member_create(
            program=program_a,
            first_name="Fox",
            last_name="Mulder",
            email="fox@fbi.gov",
            phone="06.12.34.56.78",
        ),
    }


def matching(text):
    return sorted(m.first_name for m in selectors.members_matching(Member.objects.all(), text))


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("", ["Dana", "Fox"]),
        ("   ", ["Dana", "Fox"]),
        ("FBI.GOV", ["Dana", "Fox"]),
        ("  scully ", ["Dana"]),
        ("fox   mulder", ["Fox"]),
        ("mulder dana", []),
        ("202-555-0143", ["Dana"]),
        ("2025550143", ["Dana"]),
        ("0612345678", ["Fox"]),
        ("+33 6 12 34 56 78", []),  # stored without the country code: no false match either
        ("055", []),  # three digits are too few for a phone search (and no number starts with 0)
    ],
)
def test_members_matching_normalises_the_query(people, text, found):
    assert matching(text) == found


def test_members_matching_by_number_prefix(people):
    number = people["dana"].membership_number
    assert matching(number) == ["Dana"]
    assert matching(f"{number[:4]} {number[4:]}") == ["Dana"]


# --- Dates ------------------------------------------------------------------------------


def test_end_of_local_day_handles_daylight_saving():
    paris = ZoneInfo("Europe/Paris")
    # 30 March 2025 is 23 hours long in Paris.
    end = selectors.end_of_local_day(date(2025, 3, 30), paris)
    assert end.astimezone(UTC) == datetime(2025, 3, 30, 21, 59, 59, 999999, tzinfo=UTC)
    start, stop = selectors.local_day_bounds(date(2025, 3, 30), paris)
    assert stop.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)


# --- History ----------------------------------------------------------------------------


def test_history_rows_diff_each_record_against_the_one_before(member_a, django_assert_num_queries):
    member_a.status = Member.Status.SUSPENDED
    member_a.save()
    member_a.phone = "0102030405"
    member_a.last_name = "Smith"
    member_a.save()
    records = list(member_a.history.order_by("-history_date", "-history_id"))
    with django_assert_num_queries(0):
        rows = selectors.history_rows(records)
    assert [sorted(c.field for c in row.changes) for row in rows] == [["last_name", "phone"], ["status"], []]
    assert [(c.old, c.new) for c in rows[1].changes] == [("Active", "Suspended")]
