"""The points ledger's behaviour, on whichever database is configured (SQLite or PostgreSQL).

Every test posts with a fixed clock (`now=`), and after every test the whole
ledger is checked against its invariants (see `ledger_helpers.ledger_problems`).
"""

from collections import Counter
from datetime import datetime, timedelta
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty import ledger
from loyalty.ledger import Actor, IdempotencyConflict, InsufficientPoints, LedgerError, NothingToReverse
from loyalty.models import LedgerEntry, PointAllocation, PointLot, PointsAccount, Program
from loyalty.services import member_create
from tests.loyalty.ledger_helpers import (
    JOB,
    T0,
    Kind,
    Source,
    assert_ledger_consistent,
    days,
    earn,
    give_back,
    ledger_problems,
    live_lots,
    new_key,
    redeem,
    snapshot,
    take_back,
)

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture(autouse=True)
def ledger_stays_consistent(db):
    """Whatever a test did, the books must still balance afterwards."""
    yield
    assert_ledger_consistent()


@pytest.fixture
def account(member_a):
    return member_a.account


@pytest.fixture
def other_account(member_b):
    return member_b.account


@pytest.fixture
def account_of_b(member_of_b):
    return member_of_b.account


@pytest.fixture
def allow_debt(program_a):
    program_a.negative_balance_policy = Program.NegativeBalancePolicy.ALLOW_DEBT
    program_a.save()
    return program_a


@pytest.fixture
def pending_two_weeks(program_a):
    program_a.pending_days = 14
    program_a.save()
    return program_a


def fresh(account: PointsAccount) -> PointsAccount:
    return PointsAccount.objects.get(pk=account.pk)


def lot_of(posting) -> PointLot:
    return PointLot.objects.get(entry=posting.entry)


def taken_by(posting) -> dict[int, int]:
    return dict(PointAllocation.objects.filter(entry=posting.entry).values_list("lot_id", "points"))


# --- Credit ----------------------------------------------------------------


def test_a_credit_puts_the_points_in_a_new_lot_expiring_by_the_program_policy(account):
    posting = earn(account, 100)

    lot = lot_of(posting)
    assert (posting.balance, posting.pending, posting.replayed) == (100, 0, False)
    assert (lot.original, lot.remaining, lot.pending) == (100, 100, False)
    assert lot.expires_at == datetime(2026, 3, 3, 13, 0, tzinfo=PARIS)  # 12 months, Paris wall clock
    account = fresh(account)
    assert (account.balance, account.lifetime_earned) == (100, 100)
    entry = posting.entry
    assert (entry.kind, entry.points, entry.balance_after, entry.actor_label) == (
        "earn",
        100,
        100,
        "job:tests",
    )


@pytest.mark.parametrize("points", [0, -5, 2.5, "10"])
def test_a_credit_of_anything_but_a_positive_whole_number_is_refused(account, points):
    before = snapshot()

    with pytest.raises(LedgerError, match="positive whole number"):
        earn(account, points)

    assert snapshot() == before


def test_a_credit_without_a_reason_is_refused_and_changes_nothing(account):
    before = snapshot()

    with pytest.raises(LedgerError, match="reason"):
        earn(account, 10, reason="   ")

    assert snapshot() == before


@pytest.mark.parametrize("label", ["", "  "])
def test_a_posting_without_an_actor_label_is_refused_with_a_clear_error(account, supervisor, label):
    earn(account, 10)
    before = snapshot()

    for post in (
        lambda: earn(account, 10, actor=Actor(label=label, user=supervisor)),
        lambda: redeem(account, 5, actor=Actor(label=label, user=supervisor)),
    ):
        with pytest.raises(LedgerError) as refused:
            post()
        assert refused.value.field == "actor"

    assert snapshot() == before


def test_every_write_needs_an_idempotency_key(account):
    with pytest.raises(LedgerError, match="idempotency key"):
        ledger.credit(account=account, points=1, reason="x", actor=JOB, idempotency_key="", source=Source.API)

    assert LedgerEntry.objects.count() == 0


# --- Debit -----------------------------------------------------------------


def test_a_debit_spends_the_soonest_expiring_lots_first_and_never_expiring_ones_last(account):
    never = lot_of(earn(account, 10, expires_at=None))
    late = lot_of(earn(account, 10, expires_at=T0 + days(300)))
    soon = lot_of(earn(account, 10, expires_at=T0 + days(30)))
    middle = lot_of(earn(account, 10, expires_at=T0 + days(60)))

    first = redeem(account, 25)
    second = redeem(account, 10)

    assert taken_by(first) == {soon.pk: 10, middle.pk: 10, late.pk: 5}
    assert taken_by(second) == {late.pk: 5, never.pk: 5}
    assert live_lots(account) == {never.pk: 5}
    assert (second.balance, fresh(account).lifetime_redeemed) == (5, 35)


def test_lots_expiring_at_the_same_moment_are_spent_oldest_first(account):
    older = lot_of(earn(account, 10, expires_at=T0 + days(30)))
    newer = lot_of(earn(account, 10, expires_at=T0 + days(30)))

    assert taken_by(redeem(account, 12)) == {older.pk: 10, newer.pk: 2}


def test_a_debit_of_more_than_the_balance_is_refused_and_changes_nothing(account):
    earn(account, 50)
    before = snapshot()

    with pytest.raises(InsufficientPoints) as refused:
        redeem(account, 51)

    assert refused.value.extra == {"available": 50, "shortfall": 1}
    assert snapshot() == before


def test_pending_points_cannot_be_spent(account, pending_two_weeks):
    earn(account, 100)

    with pytest.raises(InsufficientPoints):
        redeem(account, 1)

    assert (fresh(account).balance, fresh(account).pending) == (0, 100)


def test_a_redemption_never_goes_below_zero_even_where_the_program_allows_debt(account, allow_debt):
    earn(account, 50)
    before = snapshot()

    with pytest.raises(InsufficientPoints):
        redeem(account, 51, allow_debt=True)

    assert snapshot() == before


def test_a_debit_spending_the_whole_balance_leaves_zero(account):
    earn(account, 30)
    earn(account, 20)

    assert redeem(account, 50).balance == 0
    assert live_lots(account) == {}


# --- Adjust ----------------------------------------------------------------


def test_an_adjustment_moves_points_up_and_down_and_names_the_person(account, supervisor):
    by = Actor.of_user(supervisor)
    up = ledger.adjust(account=account, points=80, reason="Goodwill", actor=by, idempotency_key="adj-1")
    down = ledger.adjust(
        account=account, points=-30, reason="Double credit", actor=by, idempotency_key="adj-2"
    )

    assert (up.balance, down.balance) == (80, 50)
    for posting in (up, down):
        assert (posting.entry.kind, posting.entry.actor, posting.entry.actor_label) == (
            "adjust",
            supervisor,
            "user:supervisor",
        )
        assert posting.entry.source == Source.AGENT
    account = fresh(account)
    # Corrections are neither earning nor redeeming.
    assert (account.lifetime_earned, account.lifetime_redeemed) == (0, 0)


@pytest.mark.parametrize("reason", ["", "   "])
def test_an_adjustment_needs_a_reason(account, supervisor, reason):
    earn(account, 10)
    before = snapshot()

    for points in (5, -5):
        with pytest.raises(LedgerError, match="reason"):
            ledger.adjust(
                account=account,
                points=points,
                reason=reason,
                actor=Actor.of_user(supervisor),
                idempotency_key=new_key(),
            )

    assert snapshot() == before


def test_an_adjustment_needs_a_person_or_a_job(account):
    before = snapshot()

    with pytest.raises(LedgerError) as refused:
        ledger.adjust(
            account=account, points=5, reason="Goodwill", actor=Actor(label="someone"), idempotency_key="a"
        )

    assert refused.value.field == "actor"
    assert snapshot() == before


def test_an_adjustment_of_zero_points_is_refused(account, supervisor):
    with pytest.raises(LedgerError, match="at least one point"):
        ledger.adjust(
            account=account, points=0, reason="Nothing", actor=Actor.of_user(supervisor), idempotency_key="a"
        )

    assert LedgerEntry.objects.count() == 0


def test_a_downward_adjustment_below_zero_is_refused_without_a_debt_policy(account, supervisor):
    earn(account, 10)
    before = snapshot()

    with pytest.raises(InsufficientPoints):
        ledger.adjust(
            account=account,
            points=-11,
            reason="Fraud",
            actor=Actor.of_user(supervisor),
            idempotency_key="a",
            allow_debt=True,
        )

    assert snapshot() == before


# --- Reverse -----------------------------------------------------------------


def test_reversing_a_credit_takes_its_points_back_from_its_own_lot(account):
    earn(account, 40, expires_at=T0 + days(10))  # sooner-expiring, but not the one reversed
    purchase = earn(account, 100)

    reversal = take_back(purchase.entry)

    assert (reversal.balance, reversal.entry.points, reversal.entry.kind) == (40, -100, "reverse")
    assert reversal.entry.reverses == purchase.entry
    assert taken_by(reversal) == {lot_of(purchase).pk: 100}


def test_partial_reversals_add_up_and_a_third_has_nothing_to_reverse(account):
    purchase = earn(account, 100)
    take_back(purchase.entry, points=30)
    second = take_back(purchase.entry)  # the rest: 70

    before = snapshot()
    with pytest.raises(NothingToReverse):
        take_back(purchase.entry)
    with pytest.raises(NothingToReverse):
        take_back(purchase.entry, points=1)

    assert snapshot() == before
    assert (second.entry.points, second.balance) == (-70, 0)
    assert sum(purchase.entry.reversals.values_list("points", flat=True)) == -100


def test_reversing_more_than_is_left_is_refused(account):
    purchase = earn(account, 100)
    take_back(purchase.entry, points=60)
    before = snapshot()

    with pytest.raises(LedgerError, match="Only 40 points"):
        take_back(purchase.entry, points=41)

    assert snapshot() == before
    assert take_back(purchase.entry, points=40).balance == 0


def test_reversing_a_credit_already_spent_is_refused_without_a_debt_policy(account):
    purchase = earn(account, 100)
    earn(account, 50)
    redeem(account, 120)
    before = snapshot()

    with pytest.raises(InsufficientPoints) as refused:
        take_back(purchase.entry, allow_debt=True)

    assert refused.value.extra == {"available": 30, "shortfall": 70}
    assert snapshot() == before


def test_reversing_a_partly_spent_credit_takes_the_rest_from_other_lots(account):
    purchase = lot_of(earn(account, 100, expires_at=T0 + days(10)))
    later = lot_of(earn(account, 100, expires_at=T0 + days(90)))
    redeem(account, 60)  # from the purchase's lot: 40 left there

    reversal = take_back(PointLot.objects.get(pk=purchase.pk).entry)

    assert taken_by(reversal) == {purchase.pk: 40, later.pk: 60}
    assert reversal.balance == 40


def test_reversing_a_credit_whose_lot_expired_takes_nothing_again_from_other_lots(account):
    purchase = earn(account, 100, expires_at=T0 + days(10))
    later = lot_of(earn(account, 80, expires_at=T0 + days(90)))
    ledger.expire_due_lots(now=T0 + days(11))  # the purchase's 100 leave the balance
    before = snapshot()

    with pytest.raises(NothingToReverse, match="100 of its points expired"):
        take_back(purchase.entry, now=T0 + days(12))
    with pytest.raises(NothingToReverse):
        take_back(purchase.entry, points=1, now=T0 + days(12))

    assert snapshot() == before
    assert fresh(account).balance == 80
    assert PointLot.objects.get(pk=later.pk).remaining == 80
    assert ledger.reversible_points(entry=purchase.entry) == 0


def test_reversing_a_partly_spent_then_expired_credit_takes_back_only_the_spent_part(account):
    purchase = lot_of(earn(account, 100, expires_at=T0 + days(10)))
    later = lot_of(earn(account, 100, expires_at=T0 + days(90)))
    redeem(account, 30)  # from the purchase's lot, the soonest to expire
    ledger.expire_due_lots(now=T0 + days(11))  # its other 70 expire
    entry = PointLot.objects.get(pk=purchase.pk).entry
    assert ledger.reversible_points(entry=entry) == 30

    with pytest.raises(LedgerError, match=r"Only 30 points of this entry are left to reverse \(70 expired\)"):
        take_back(entry, points=31, now=T0 + days(12))
    reversal = take_back(entry, now=T0 + days(12))

    # The 30 spent come from the other lot; the 70 expired are not taken a second time.
    assert (reversal.entry.points, reversal.balance) == (-30, 70)
    assert taken_by(reversal) == {later.pk: 30}
    with pytest.raises(NothingToReverse):
        take_back(entry, now=T0 + days(13))


def test_a_partial_reversal_before_expiry_leaves_only_the_unexpired_rest(account):
    purchase = earn(account, 100, expires_at=T0 + days(10))
    earn(account, 50, expires_at=None)
    take_back(purchase.entry, points=40)  # from its own lot: 60 left there
    ledger.expire_due_lots(now=T0 + days(11))  # those 60 expire

    assert ledger.reversible_points(entry=purchase.entry) == 0
    with pytest.raises(NothingToReverse):
        take_back(purchase.entry, now=T0 + days(12))
    assert fresh(account).balance == 50


def test_reversing_a_pending_credit_takes_the_points_out_of_pending(account, pending_two_weeks):
    purchase = earn(account, 100)

    partial = take_back(purchase.entry, points=30)
    rest = take_back(purchase.entry)

    assert (partial.entry.points, partial.entry.pending_points, partial.pending) == (0, -30, 70)
    assert (rest.balance, rest.pending) == (0, 0)
    assert ledger.activate_pending_lots(now=T0 + days(30)).lots == 0


def test_a_credit_reversed_after_activation_comes_out_of_the_balance(account, pending_two_weeks):
    purchase = earn(account, 100)
    take_back(purchase.entry, points=25)
    ledger.activate_pending_lots(now=T0 + days(14))

    reversal = take_back(purchase.entry, now=T0 + days(15))

    assert (reversal.entry.points, reversal.balance, reversal.pending) == (-75, 0, 0)


def test_reversing_a_redemption_puts_its_points_back(account):
    earn(account, 100)
    spent = redeem(account, 70)

    assert take_back(spent.entry).balance == 100
    assert live_lots(account) == {PointLot.objects.get(account=account).pk: 100}


@pytest.mark.parametrize("kind", [Kind.EXPIRE, Kind.ACTIVATE])
def test_job_entries_cannot_be_reversed(account, kind):
    earn(account, 10, expires_at=T0 + days(1), available_from=T0 + days(1))
    ledger.activate_pending_lots(now=T0 + days(1))
    ledger.expire_due_lots(now=T0 + days(2))
    entry = LedgerEntry.objects.get(kind=kind)

    with pytest.raises(LedgerError, match="cannot be reversed"):
        take_back(entry)

    assert entry.reversals.count() == 0


def test_a_reversal_cannot_itself_be_reversed(account):
    reversal = take_back(earn(account, 10).entry)

    with pytest.raises(LedgerError, match="cannot be reversed"):
        take_back(reversal.entry)

    assert fresh(account).balance == 0


# --- Refund ------------------------------------------------------------------


def test_a_refund_restores_the_balance_and_the_same_lots(account):
    soon = lot_of(earn(account, 100, expires_at=T0 + days(30)))
    late = lot_of(earn(account, 100, expires_at=T0 + days(300)))
    spent = redeem(account, 150)

    refund = give_back(spent.entry, now=T0 + days(1))

    assert (refund.entry.kind, refund.entry.points, refund.balance) == ("refund", 150, 200)
    assert live_lots(account) == {soon.pk: 100, late.pk: 100}
    assert PointLot.objects.filter(account=account).count() == 2  # no new lot
    assert fresh(account).lifetime_redeemed == 0


def test_a_refund_goes_into_a_fresh_lot_where_the_original_lot_has_expired(account):
    gone = lot_of(earn(account, 100, expires_at=T0 + days(30)))
    spent_out = lot_of(earn(account, 20, expires_at=T0 + days(31)))
    kept = lot_of(earn(account, 50, expires_at=None))
    spent = redeem(account, 130)  # gone: 100 -> 0, spent_out: 20 -> 0, kept: 50 -> 40
    ledger.expire_due_lots(now=T0 + days(40))  # nothing live left in the expired lots

    refund = give_back(spent.entry, now=T0 + days(40))

    lots = live_lots(account)
    new = PointLot.objects.get(entry=refund.entry)
    assert lots == {kept.pk: 50, new.pk: 120}
    assert new.expires_at == ledger.expiry_for(account.program, T0 + days(40))
    assert PointLot.objects.get(pk=gone.pk).remaining == 0
    assert PointLot.objects.get(pk=spent_out.pk).remaining == 0
    assert refund.balance == 170


def test_a_refund_of_points_whose_lot_was_expired_by_the_job_goes_into_a_fresh_lot(account):
    lot = lot_of(earn(account, 100, expires_at=T0 + days(30)))
    spent = redeem(account, 60)
    expiry = ledger.expire_due_lots(now=T0 + days(31))

    refund = give_back(spent.entry, now=T0 + days(32))

    assert (expiry.lots, expiry.points) == (1, -40)
    assert PointLot.objects.get(pk=lot.pk).remaining == 0
    assert live_lots(account) == {PointLot.objects.get(entry=refund.entry).pk: 60}


def test_a_partial_reversal_then_refund_of_a_redemption_gives_back_the_rest(account):
    earn(account, 100)
    spent = redeem(account, 80)
    take_back(spent.entry, points=30)

    refund = give_back(spent.entry)

    assert (refund.entry.points, refund.balance) == (50, 100)
    with pytest.raises(NothingToReverse):
        give_back(spent.entry)


def test_only_a_redemption_can_be_refunded(account):
    purchase = earn(account, 10)

    with pytest.raises(LedgerError, match="Only a redemption"):
        give_back(purchase.entry)

    assert fresh(account).balance == 10


# --- Pending and activation ----------------------------------------------------


def test_pending_points_count_in_pending_not_in_the_balance(account, pending_two_weeks):
    posting = earn(account, 100)

    lot = lot_of(posting)
    assert (posting.balance, posting.pending) == (0, 100)
    assert (posting.entry.points, posting.entry.pending_points) == (0, 100)
    assert (lot.pending, lot.available_from) == (True, T0 + days(14))
    assert fresh(account).lifetime_earned == 0


def test_activation_makes_pending_points_spendable_once(account, other_account, pending_two_weeks):
    earn(account, 100)
    earn(account, 20, now=T0 + days(1))
    earn(other_account, 7)

    too_early = ledger.activate_pending_lots(now=T0 + days(14) - timedelta(seconds=1))
    first = ledger.activate_pending_lots(now=T0 + days(14))
    second = ledger.activate_pending_lots(now=T0 + days(14))

    assert (too_early.lots, first.accounts, first.lots, first.points) == (0, 2, 2, 107)
    assert (second.accounts, second.lots, second.entries) == (0, 0, [])
    account = fresh(account)
    assert (account.balance, account.pending, account.lifetime_earned) == (100, 20, 100)
    activation = LedgerEntry.objects.get(account=account, kind=Kind.ACTIVATE)
    assert (activation.points, activation.pending_points) == (100, -100)
    assert (activation.actor_label, activation.source) == ("job:activate_pending", Source.JOB)
    assert redeem(account, 100, now=T0 + days(14)).balance == 0


def test_bonus_points_are_spendable_at_once_where_earned_points_wait(account, pending_two_weeks):
    posting = earn(account, 10, kind=Kind.BONUS)

    assert (posting.balance, posting.pending) == (10, 0)


def test_an_explicit_available_from_overrides_the_pending_days(account):
    posting = earn(account, 10, available_from=T0 + days(3))

    assert (posting.balance, posting.pending) == (0, 10)
    assert ledger.activate_pending_lots(now=T0 + days(3)).points == 10


# --- Expiry policies -----------------------------------------------------------


def test_points_never_expire_under_the_never_policy(account, program_a):
    program_a.expiry_policy = Program.ExpiryPolicy.NEVER
    program_a.save()
    lot = lot_of(earn(account, 10))

    report = ledger.expire_due_lots(now=T0 + days(365 * 50))

    assert lot.expires_at is None
    assert (report.lots, fresh(account).balance) == (0, 10)


@pytest.mark.parametrize(
    ("earned", "months", "expires"),
    [
        (datetime(2025, 1, 15, 10, 0, tzinfo=PARIS), 6, datetime(2025, 7, 15, 10, 0, tzinfo=PARIS)),
        # No 31 February: the last day of the month.
        (datetime(2024, 8, 31, 9, 0, tzinfo=PARIS), 6, datetime(2025, 2, 28, 9, 0, tzinfo=PARIS)),
        (datetime(2023, 2, 28, 9, 0, tzinfo=PARIS), 12, datetime(2024, 2, 28, 9, 0, tzinfo=PARIS)),
        # Late evening in Paris is still the same local day, across a year end.
        (datetime(2024, 12, 31, 23, 30, tzinfo=PARIS), 1, datetime(2025, 1, 31, 23, 30, tzinfo=PARIS)),
    ],
)
def test_points_expire_n_months_after_earning(account, program_a, earned, months, expires):
    program_a.expiry_policy = Program.ExpiryPolicy.MONTHS_AFTER_EARN
    program_a.expiry_months = months
    program_a.save()

    lot = lot_of(earn(account, 10, occurred_at=earned, now=earned))

    assert lot.expires_at == expires


@pytest.mark.parametrize(
    ("earned", "years", "expires"),
    [
        # 31 Dec 23:30 in Paris is 22:30 UTC: the year of earning is 2024 either way.
        (datetime(2024, 12, 31, 23, 30, tzinfo=PARIS), 1, datetime(2026, 1, 1, tzinfo=PARIS)),
        # 1 Jan 00:30 in Paris is still 2024 in UTC: the program's time zone decides.
        (datetime(2025, 1, 1, 0, 30, tzinfo=PARIS), 1, datetime(2027, 1, 1, tzinfo=PARIS)),
        (datetime(2025, 6, 15, 12, 0, tzinfo=PARIS), 2, datetime(2028, 1, 1, tzinfo=PARIS)),
    ],
)
def test_points_expire_at_the_end_of_the_nth_year_in_the_program_time_zone(
    account, program_a, earned, years, expires
):
    program_a.expiry_policy = Program.ExpiryPolicy.END_OF_NTH_YEAR
    program_a.expiry_years = years
    program_a.save()
    lot = lot_of(earn(account, 10, occurred_at=earned, now=earned))

    just_before = ledger.expire_due_lots(now=expires - timedelta(seconds=1))
    at_midnight = ledger.expire_due_lots(now=expires)

    assert lot.expires_at == expires
    assert (just_before.lots, at_midnight.lots) == (0, 1)


def test_year_end_expiry_follows_each_program_time_zone(account_of_b, program_b):
    program_b.expiry_policy = Program.ExpiryPolicy.END_OF_NTH_YEAR
    program_b.save()
    new_york = ZoneInfo("America/New_York")
    earned = datetime(2024, 12, 31, 23, 30, tzinfo=new_york)  # already 2025 in UTC

    lot = lot_of(earn(account_of_b, 10, occurred_at=earned, now=earned))

    assert lot.expires_at == datetime(2026, 1, 1, tzinfo=new_york)


# --- The expiry job ----------------------------------------------------------


def test_expiry_expires_each_due_lot_once_with_one_entry_per_account(account, other_account):
    first = lot_of(earn(account, 100, expires_at=T0 + days(10)))
    second = lot_of(earn(account, 50, expires_at=T0 + days(20)))
    lasting = lot_of(earn(account, 30, expires_at=T0 + days(400)))
    partly_spent = lot_of(earn(other_account, 70, expires_at=T0 + days(15)))
    redeem(other_account, 20)

    report = ledger.expire_due_lots(now=T0 + days(30), batch_size=1)
    again = ledger.expire_due_lots(now=T0 + days(30))

    assert (report.accounts, report.lots, report.points) == (2, 3, -200)  # signed like the entries
    assert (again.accounts, again.lots, again.entries) == (0, 0, [])
    entries = {e.account_id: e for e in LedgerEntry.objects.filter(kind=Kind.EXPIRE)}
    assert sorted(e.pk for e in entries.values()) == sorted(report.entries)
    assert (entries[account.pk].points, entries[other_account.pk].points) == (-150, -50)
    for entry in entries.values():
        assert (entry.actor_label, entry.source, entry.reason) == (
            "job:expire_points",
            Source.JOB,
            "Points reached their expiry date",
        )
    expired = {lot.pk: (lot.remaining, lot.expired, lot.expiry_entry_id) for lot in PointLot.objects.all()}
    assert expired[first.pk] == (0, 100, entries[account.pk].pk)
    assert expired[second.pk] == (0, 50, entries[account.pk].pk)
    assert expired[lasting.pk] == (30, 0, None)
    assert expired[partly_spent.pk] == (0, 50, entries[other_account.pk].pk)
    account, other_account = fresh(account), fresh(other_account)
    assert (account.balance, account.lifetime_expired) == (30, 150)
    assert (other_account.balance, other_account.lifetime_expired) == (0, 50)


def test_a_lot_expires_at_its_expiry_moment_not_before(account):
    earn(account, 10, expires_at=T0 + days(5))

    assert ledger.expire_due_lots(now=T0 + days(5) - timedelta(microseconds=1)).lots == 0
    assert ledger.expire_due_lots(now=T0 + days(5)).lots == 1


def test_expiry_leaves_pending_lots_until_they_are_activated(account):
    earn(account, 10, available_from=T0 + days(10), expires_at=T0 + days(5))

    assert ledger.expire_due_lots(now=T0 + days(6)).lots == 0
    ledger.activate_pending_lots(now=T0 + days(10))
    assert ledger.expire_due_lots(now=T0 + days(10)).points == -10


def test_expiring_a_fully_spent_lot_writes_nothing(account):
    earn(account, 10, expires_at=T0 + days(5))
    redeem(account, 10)

    report = ledger.expire_due_lots(now=T0 + days(6))

    assert (report.lots, LedgerEntry.objects.filter(kind=Kind.EXPIRE).count()) == (0, 0)


# --- A job that dies midway ---------------------------------------------------------


def _dies_in_batch(number: int):
    """A stand-in for the job's batch that does all its writes, then dies before they commit."""
    real_batch = ledger._run_batch
    calls = []

    def batch(*args, **kwargs):
        result = real_batch(*args, **kwargs)
        calls.append(result)
        if len(calls) == number:
            raise RuntimeError("worker killed")
        return result

    return mock.patch.object(ledger, "_run_batch", batch)


def test_an_expiry_run_that_dies_midway_is_finished_once_by_a_rerun(program_a):
    accounts = [
        member_create(program=program_a, first_name=f"M{n}", last_name="Due").account for n in range(6)
    ]
    for account in accounts:
        earn(account, 30, expires_at=T0 + days(1))
        earn(account, 12, expires_at=T0 + days(2))
        earn(account, 5, expires_at=None)

    with _dies_in_batch(2), pytest.raises(RuntimeError):
        ledger.expire_due_lots(now=T0 + days(2), batch_size=3)
    half_done = LedgerEntry.objects.filter(kind=Kind.EXPIRE).count()
    assert_ledger_consistent()
    rerun = ledger.expire_due_lots(now=T0 + days(2), batch_size=3)
    again = ledger.expire_due_lots(now=T0 + days(2), batch_size=3)

    assert 0 < half_done < len(accounts)
    assert (rerun.accounts, again.accounts) == (len(accounts) - half_done, 0)
    expiries = Counter(LedgerEntry.objects.filter(kind=Kind.EXPIRE).values_list("account", flat=True))
    assert expiries == dict.fromkeys((a.pk for a in accounts), 1)
    totals = PointsAccount.objects.filter(pk__in=[a.pk for a in accounts]).values_list(
        "balance", "lifetime_expired"
    )
    assert set(totals) == {(5, 42)}


def test_an_activation_run_that_dies_midway_is_finished_once_by_a_rerun(program_a):
    accounts = [
        member_create(program=program_a, first_name=f"P{n}", last_name="Pending").account for n in range(6)
    ]
    for account in accounts:
        earn(account, 30, available_from=T0 + days(1))
        earn(account, 12, available_from=T0 + days(2))

    with _dies_in_batch(2), pytest.raises(RuntimeError):
        ledger.activate_pending_lots(now=T0 + days(2), batch_size=3)
    half_done = LedgerEntry.objects.filter(kind=Kind.ACTIVATE).count()
    assert_ledger_consistent()
    rerun = ledger.activate_pending_lots(now=T0 + days(2), batch_size=3)

    assert 0 < half_done < len(accounts)
    assert rerun.accounts == len(accounts) - half_done
    activations = Counter(LedgerEntry.objects.filter(kind=Kind.ACTIVATE).values_list("account", flat=True))
    assert activations == dict.fromkeys((a.pk for a in accounts), 1)
    totals = PointsAccount.objects.filter(pk__in=[a.pk for a in accounts]).values_list("balance", "pending")
    assert set(totals) == {(42, 0)}


# --- Debt ----------------------------------------------------------------------


def test_under_allow_debt_a_reversal_can_push_the_balance_below_zero(account, allow_debt):
    purchase = earn(account, 100)
    redeem(account, 80)

    reversal = take_back(purchase.entry, allow_debt=True)

    assert reversal.balance == -80
    assert live_lots(account) == {}


def test_a_reversal_below_zero_needs_the_caller_to_allow_the_debt(account, allow_debt):
    purchase = earn(account, 100)
    redeem(account, 80)
    before = snapshot()

    with pytest.raises(InsufficientPoints):
        take_back(purchase.entry)

    assert snapshot() == before


def test_the_next_credit_settles_a_debt_first(account, allow_debt):
    purchase = earn(account, 100)
    redeem(account, 80)
    take_back(purchase.entry, allow_debt=True)  # -80

    small = earn(account, 50)
    large = earn(account, 100)

    assert (small.balance, large.balance) == (-30, 70)
    assert taken_by(small) == {lot_of(small).pk: 50}  # wholly to the debt
    assert taken_by(large) == {lot_of(large).pk: 30}
    assert live_lots(account) == {lot_of(large).pk: 70}
    assert fresh(account).lifetime_earned == 250


def test_a_downward_adjustment_may_record_a_debt_where_allowed(account, allow_debt, supervisor):
    earn(account, 10)

    posting = ledger.adjust(
        account=account,
        points=-25,
        reason="Points credited twice",
        actor=Actor.of_user(supervisor),
        idempotency_key="adj",
        allow_debt=True,
    )

    assert posting.balance == -15
    assert live_lots(account) == {}


def test_activation_settles_a_debt_first(account, allow_debt, supervisor):
    earn(account, 40, available_from=T0 + days(3))
    ledger.adjust(
        account=account,
        points=-25,
        reason="Fraud",
        actor=Actor.of_user(supervisor),
        idempotency_key="adj",
        allow_debt=True,
    )

    ledger.activate_pending_lots(now=T0 + days(3))

    account = fresh(account)
    assert (account.balance, account.pending) == (15, 0)
    assert sum(live_lots(account).values()) == 15


def test_a_refund_while_in_debt_pays_the_debt_before_refilling_lots(account, allow_debt):
    purchase = earn(account, 100, expires_at=None)
    spent = redeem(account, 60)
    take_back(purchase.entry, allow_debt=True)  # 40 left of the purchase; -60 balance

    refund = give_back(spent.entry)

    assert refund.balance == 0
    assert live_lots(account) == {}


def test_reversing_a_debt_adjustment_puts_back_only_what_it_took_from_lots(account, allow_debt, supervisor):
    lot = lot_of(earn(account, 30, expires_at=None))
    debt = ledger.adjust(
        account=account,
        points=-100,
        reason="Fraud",
        actor=Actor.of_user(supervisor),
        idempotency_key="adj",
        allow_debt=True,
    )

    half = take_back(debt.entry, points=50)
    rest = take_back(debt.entry)

    assert (half.balance, rest.balance) == (-20, 30)
    assert live_lots(account) == {lot.pk: 30}


# --- Idempotency -----------------------------------------------------------------


def _setup_for_replay(account, supervisor):
    purchase = earn(account, 100)
    spent = redeem(account, 40)
    by = Actor.of_user(supervisor)
    return {
        "credit": lambda: earn(account, 25, key="same", reason="Purchase 7"),
        "debit": lambda: redeem(account, 10, key="same"),
        "adjust up": lambda: ledger.adjust(
            account=account, points=5, reason="r", actor=by, idempotency_key="same"
        ),
        "adjust down": lambda: ledger.adjust(
            account=account, points=-5, reason="r", actor=by, idempotency_key="same"
        ),
        "reverse": lambda: take_back(purchase.entry, points=10, key="same"),
        "refund": lambda: give_back(spent.entry, key="same"),
    }


@pytest.mark.parametrize("operation", ["credit", "debit", "adjust up", "adjust down", "reverse", "refund"])
def test_the_same_key_and_payload_returns_the_original_entry_and_writes_nothing(
    account, supervisor, operation
):
    post = _setup_for_replay(account, supervisor)[operation]
    first = post()
    before = snapshot()

    again = post()

    assert (first.replayed, again.replayed) == (False, True)
    assert again.entry.pk == first.entry.pk
    assert again.balance == first.balance
    assert snapshot() == before


def test_a_replayed_redemption_returns_the_original_even_when_the_points_are_gone(account):
    earn(account, 100)
    first = redeem(account, 100, key="order-1")
    before = snapshot()

    again = redeem(account, 100, key="order-1")

    assert (again.replayed, again.entry.pk) == (True, first.entry.pk)
    assert snapshot() == before


def test_a_replayed_full_reversal_returns_the_original_instead_of_an_error(account):
    purchase = earn(account, 100)
    first = take_back(purchase.entry, key="return-1")
    before = snapshot()

    again = take_back(purchase.entry, key="return-1")

    assert (again.replayed, again.entry.pk) == (True, first.entry.pk)
    assert snapshot() == before


def test_a_replayed_partial_reversal_returns_the_original_when_less_is_left(account):
    purchase = earn(account, 100)
    first = take_back(purchase.entry, points=70, key="return-1")
    take_back(purchase.entry, points=30, key="return-2")

    again = take_back(purchase.entry, points=70, key="return-1")

    assert (again.replayed, again.entry.pk) == (True, first.entry.pk)


def test_a_replayed_refund_returns_the_original(account):
    earn(account, 100)
    spent = redeem(account, 40)
    first = give_back(spent.entry, key="cancel-1")

    again = give_back(spent.entry, key="cancel-1")

    assert (again.replayed, again.entry.pk) == (True, first.entry.pk)


def test_a_new_key_for_a_business_error_is_still_the_business_error(account):
    before = snapshot()

    with pytest.raises(InsufficientPoints):
        redeem(account, 1, key="never-used")

    assert snapshot() == before


@pytest.mark.parametrize(
    "change",
    [
        {"points": 26},
        {"reason": "Purchase 8"},
        {"reference": "receipt-2"},
        {"kind": Kind.BONUS},
    ],
)
def test_the_same_key_with_a_different_payload_is_a_conflict(account, change):
    earn(account, 25, key="same", reason="Purchase 7", reference="receipt-1")
    before = snapshot()

    payload = {"reason": "Purchase 7", "reference": "receipt-1", "points": 25, **change}
    with pytest.raises(IdempotencyConflict):
        earn(account, key="same", **payload)

    assert snapshot() == before


def test_the_same_key_on_another_account_of_the_program_is_a_conflict(account, other_account):
    earn(account, 25, key="same")

    with pytest.raises(IdempotencyConflict):
        earn(other_account, 25, key="same")

    assert fresh(other_account).balance == 0


def test_the_same_key_for_another_operation_is_a_conflict(account):
    earn(account, 25, key="same")

    with pytest.raises(IdempotencyConflict):
        redeem(account, 25, key="same")

    assert fresh(account).balance == 25


def test_a_key_that_failed_a_business_rule_is_not_burnt(account):
    with pytest.raises(InsufficientPoints):
        redeem(account, 10, key="order-1")
    earn(account, 10)

    assert redeem(account, 10, key="order-1").replayed is False


def test_the_same_key_in_another_program_is_independent(account, account_of_b):
    first = earn(account, 25, key="same")

    other = earn(account_of_b, 25, key="same")

    assert other.replayed is False
    assert other.entry.pk != first.entry.pk
    assert (fresh(account).balance, fresh(account_of_b).balance) == (25, 25)


# --- Reads -----------------------------------------------------------------------


def test_balance_as_of_answers_for_moments_between_postings(account):
    first = earn(account, 100, now=T0)
    spent = redeem(account, 30, now=T0 + days(1))
    later = earn(account, 50, now=T0 + days(2), available_from=T0 + days(5))

    def as_of(moment):
        snap = ledger.balance_as_of(account=account, moment=moment)
        return snap.balance, snap.pending, snap.last_entry_id

    assert as_of(T0 - timedelta(seconds=1)) == (0, 0, None)
    assert as_of(T0) == (100, 0, first.entry.pk)
    assert as_of(T0 + timedelta(hours=12)) == (100, 0, first.entry.pk)
    assert as_of(T0 + days(1)) == (70, 0, spent.entry.pk)
    assert as_of(T0 + days(3)) == (70, 50, later.entry.pk)


def test_an_expiry_counts_in_the_balance_as_of_the_moment_it_ran(account):
    earn(account, 10, expires_at=T0 + days(5))
    expiry = ledger.expire_due_lots(now=T0 + days(5))

    snap = ledger.balance_as_of(account=account, moment=T0 + days(5))

    assert (snap.balance, snap.last_entry_id) == (0, expiry.entries[0])
    assert LedgerEntry.objects.get(pk=expiry.entries[0]).posted_at == T0 + days(5)


def test_the_jobs_take_a_now_in_any_time_zone(account):
    earn(account, 10, available_from=T0 + days(1), expires_at=T0 + days(5))
    paris = (T0 + days(1)).astimezone(PARIS)

    assert ledger.activate_pending_lots(now=paris - timedelta(seconds=1)).lots == 0
    assert ledger.activate_pending_lots(now=paris).lots == 1
    assert ledger.expire_due_lots(now=(T0 + days(5) - timedelta(seconds=1)).astimezone(PARIS)).lots == 0
    assert ledger.expire_due_lots(now=(T0 + days(5)).astimezone(PARIS)).lots == 1


def test_balance_as_of_is_one_query(account, django_assert_num_queries):
    for n in range(5):
        earn(account, 10, now=T0 + days(n))

    with django_assert_num_queries(1):
        snap = ledger.balance_as_of(account=account, moment=T0 + days(2))

    assert snap.balance == 30


# --- Reconcile ---------------------------------------------------------------------


def test_reconcile_is_clean_after_every_kind_of_posting(account, other_account, allow_debt, supervisor):
    allow_debt.pending_days = 7
    allow_debt.save()
    by = Actor.of_user(supervisor)
    a = earn(account, 100, expires_at=T0 + days(20), available_from=T0)
    earn(account, 60, kind=Kind.BONUS, expires_at=None)
    pending = earn(account, 40)
    spent = redeem(account, 120)
    ledger.adjust(account=account, points=15, reason="Goodwill", actor=by, idempotency_key="adj-1")
    take_back(pending.entry, points=10)
    ledger.activate_pending_lots(now=T0 + days(7))
    give_back(spent.entry, now=T0 + days(8))
    take_back(a.entry, points=50, now=T0 + days(9))
    ledger.expire_due_lots(now=T0 + days(21))
    b = earn(other_account, 30, kind=Kind.BONUS)
    redeem(other_account, 20)
    take_back(b.entry, allow_debt=True)  # other account in debt: -20
    earn(other_account, 5, kind=Kind.BONUS)
    earn(account, 25, key="replayed")
    earn(account, 25, key="replayed")

    assert ledger.reconcile() == []
    assert ledger_problems() == []
    assert not LedgerEntry.objects.filter(reason="").exists()
    assert not LedgerEntry.objects.filter(actor_label="").exists()
    assert fresh(other_account).balance == -15


def test_reconcile_reports_a_tampered_account(account, other_account):
    earn(account, 100)
    earn(other_account, 10)
    PointsAccount.objects.filter(pk=account.pk).update(balance=90)

    found = ledger.reconcile()

    checks = {(d.account_id, d.check, d.expected, d.actual) for d in found}
    assert (account.pk, "balance = sum(entries)", 90, 100) in checks
    assert (account.pk, "balance = last balance_after", 90, 100) in checks
    assert (account.pk, "live lots = max(balance, 0)", 90, 100) in checks
    assert {d.account_id for d in found} == {account.pk}
    assert ledger.reconcile(program=account.program) != []
    PointsAccount.objects.filter(pk=account.pk).update(balance=100)  # put the books right again


def test_reconcile_reports_a_tampered_lot(account):
    lot = lot_of(earn(account, 100))
    PointLot.objects.filter(pk=lot.pk).update(remaining=99)

    found = {(d.check, d.expected, d.actual) for d in ledger.reconcile()}

    assert ("lot remaining = original - allocated - expired", 100, 99) in found
    assert ("live lots = max(balance, 0)", 100, 99) in found
    PointLot.objects.filter(pk=lot.pk).update(remaining=100)


def test_reconcile_reports_a_lot_whose_expiry_entry_is_not_an_expiry_of_its_account(account, other_account):
    # PointLot.expiry_entry has no database foreign key (it made expiry slow): reconcile checks it.
    lot = lot_of(earn(account, 100, expires_at=T0 + days(10)))
    other = lot_of(earn(other_account, 50, expires_at=T0 + days(10)))
    credit = earn(account, 5)
    ledger.expire_due_lots(now=T0 + days(11))
    lot.refresh_from_db()
    other.refresh_from_db()
    assert lot.expiry_entry.kind == Kind.EXPIRE
    assert ledger.reconcile() == []
    check = "lot expiry_entry = an expiry entry of its account"

    for wrong in (lot.expiry_entry_id + 10_000, other.expiry_entry_id, credit.entry.pk):  # missing, not its
        PointLot.objects.filter(pk=lot.pk).update(expiry_entry_id=wrong)  # account's, not an expiry
        found = ledger.reconcile()
        assert [(d.account_id, d.check, d.expected, d.actual) for d in found] == [
            (account.pk, check, lot.pk, wrong)
        ]
        assert ledger.reconcile(program=account.program) != []
    PointLot.objects.filter(pk=lot.pk).update(expiry_entry_id=lot.expiry_entry_id)
    assert ledger.reconcile() == []


def test_the_invariants_checker_notices_what_reconcile_does_and_more(account, other_account):
    # A guard for the tests themselves: the checker every test relies on is not vacuous.
    earn(account, 100)
    lot = lot_of(earn(other_account, 10))
    PointsAccount.objects.filter(pk=account.pk).update(balance=90, lifetime_expired=3)
    PointLot.objects.filter(pk=lot.pk).update(remaining=9)

    problems = "\n".join(ledger_problems())

    assert f"account {account.pk}: balance == sum(entry.points): 90 != 100" in problems
    assert f"account {account.pk}: lifetime_expired == expire entries: 3 != 0" in problems
    assert f"lot {lot.pk}: remaining 9 != original - allocated - expired 10" in problems
    assert f"account {other_account.pk}: live lots == max(balance, 0): 10 != 9" in problems
    PointsAccount.objects.filter(pk=account.pk).update(balance=100, lifetime_expired=0)
    PointLot.objects.filter(pk=lot.pk).update(remaining=10)


def test_reconcile_can_be_limited_to_one_program(account, account_of_b):
    earn(account, 10)
    earn(account_of_b, 10)
    PointsAccount.objects.filter(pk=account_of_b.pk).update(pending=5)

    assert ledger.reconcile(program=account.program) == []
    assert {d.account_id for d in ledger.reconcile(program=account_of_b.program)} == {account_of_b.pk}
    PointsAccount.objects.filter(pk=account_of_b.pk).update(pending=0)


# --- Query counts ------------------------------------------------------------------

# Measured, then pinned: a savepoint, the account lock, the entry, the lot, the
# account update and the savepoint release.
CREDIT_QUERIES = 6
# A savepoint, the lock, the entry, the lots needed (one windowed query), their
# update, the allocations, the account update and the release.
DEBIT_QUERIES = 8


def test_a_credit_runs_a_small_fixed_number_of_queries(account, django_assert_num_queries):
    earn(account, 10)

    with django_assert_num_queries(CREDIT_QUERIES):
        earn(account, 10)

    assert fresh(account).balance == 20


def test_a_debit_runs_a_small_fixed_number_of_queries(account, django_assert_num_queries):
    earn(account, 10)
    earn(account, 10)

    with django_assert_num_queries(DEBIT_QUERIES):
        redeem(account, 15)

    assert fresh(account).balance == 5


def _debit_queries(account, lots: int, points: int) -> int:
    for n in range(lots):
        earn(account, 10, expires_at=T0 + days(30 + n))
    with CaptureQueriesContext(connection) as queries:
        redeem(account, points)
    return len(queries)


def test_a_debit_costs_the_same_queries_with_100_lots_as_with_2(account, other_account):
    with_two = _debit_queries(account, lots=2, points=15)
    with_a_hundred = _debit_queries(other_account, lots=100, points=15)
    spending_half_of_them = _debit_queries(other_account, lots=0, points=500)

    assert with_two == with_a_hundred == spending_half_of_them == DEBIT_QUERIES
    assert fresh(other_account).balance == 1000 - 515


def _expiry_queries(accounts, lots_each: int) -> int:
    for account in accounts:
        for n in range(lots_each):
            earn(account, 10, expires_at=T0 + days(1 + n / 100))
    with CaptureQueriesContext(connection) as queries:
        report = ledger.expire_due_lots(now=T0 + days(5))
    assert report.lots == len(accounts) * lots_each
    return len(queries)


def test_expiry_costs_the_same_queries_for_one_lot_as_for_many(account, other_account, account_of_b):
    one = _expiry_queries([account], lots_each=1)
    many = _expiry_queries([account, other_account, account_of_b], lots_each=40)

    assert one == many
