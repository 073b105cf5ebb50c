"""Returns: a purchase gives back what it earned, in proportion to the amount returned.

Returns add up: together they never take back more than the purchase earned
(base, tier boost and promotion bonuses), and the one that completes the
purchase takes exactly the rest. Points already spent become a recorded debt or
a flagged shortfall, as the program's policy says. After every test the whole
ledger must still balance (`ledger.reconcile() == []` and the full invariants).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from loyalty import ledger, tiers
from loyalty.earning import PurchaseNotFound, activity_post, purchase_return
from loyalty.errors import ApplicationError
from loyalty.ledger import Actor, IdempotencyConflict
from loyalty.models import (
    LedgerEntry,
    Member,
    PointLot,
    PointsShortfall,
    Program,
    Promotion,
    PurchaseReturn,
    UnpaidActivity,
)
from tests.loyalty.factories import (
    ChallengeFactory,
    EarningRuleFactory,
    PromotionFactory,
    StreakFactory,
    TierFactory,
)
from tests.loyalty.ledger_helpers import assert_ledger_consistent, snapshot
from tests.loyalty.test_earning import run_in_threads

JOB = Actor.job("tests")
Kind = LedgerEntry.Kind
Source = LedgerEntry.Source
T = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

_references = itertools.count(1)


def buy(member, amount, *, reference, at=T):
    return activity_post(
        member=member,
        code="purchase",
        amount=amount,
        reference=reference,
        occurred_at=at,
        source=Source.API,
        actor=JOB,
    )


def give_back(member, original, amount, *, reference=None, source=Source.API):
    return purchase_return(
        member=member,
        original_reference=original,
        amount=amount,
        reference=reference or f"return-{next(_references)}",
        source=source,
        actor=JOB,
    )


def spend(member, points):
    return ledger.debit(
        account=member.account,
        points=points,
        reason="Reward",
        actor=JOB,
        idempotency_key=f"spend-{next(_references)}",
        source=Source.PORTAL,
    )


def account(member):
    member.account.refresh_from_db()
    return member.account


def everything() -> tuple:
    return snapshot(), PointsShortfall.objects.count()


@pytest.fixture(autouse=True)
def ledger_stays_consistent(db):
    """Whatever a test did, the books must still balance afterwards."""
    yield
    assert ledger.reconcile() == []
    assert_ledger_consistent()


@pytest.fixture(autouse=True)
def purchase_rule(program_a):
    return EarningRuleFactory(program=program_a, activity_code="purchase", name="Purchase")


@pytest.fixture
def allow_debt(program_a):
    program_a.negative_balance_policy = Program.NegativeBalancePolicy.ALLOW_DEBT
    program_a.save()


# --- Proportional returns ---------------------------------------------------------------


def test_two_half_returns_take_back_exactly_what_it_earned_and_a_third_takes_nothing(member_a, program_a):
    silver = TierFactory(program=program_a, name="Silver", rank=1, threshold=0, multiplier=Decimal("1.5"))
    member_a.tier = silver
    member_a.save()
    PromotionFactory(program=program_a, kind=Promotion.Kind.FIXED_BONUS, bonus_points=3)
    purchase = buy(member_a, "20.00", reference="P1")
    # 20 base + Silver boost 20 x 0.5 = 10 + promotion 3
    assert purchase.points == 33

    first = give_back(member_a, "P1", "10.00")
    second = give_back(member_a, "P1", "10.00")
    third = give_back(member_a, "P1", "10.00")

    # half of 33 is 16.5, rounded half up: 17; the second half takes the 16 left
    assert first.points == 17
    assert second.points == 16
    assert third.points == 0
    assert third.posting is None
    assert third.note == "The whole purchase was already returned."
    assert account(member_a).balance == 0
    for result, returned in ((first, "10.00"), (second, "10.00")):
        entry = result.posting.entry
        assert entry.kind == Kind.REVERSE
        assert entry.reverses == purchase.posting.entry
        assert entry.breakdown["returned_amount"] == returned
        assert entry.breakdown["purchase_amount"] == "20.00"
        assert entry.reason == f"Purchase P1 returned ({returned})"


def test_partial_returns_round_on_the_running_total_so_they_add_up(member_a):
    buy(member_a, "10.00", reference="P1")  # 10 points

    taken = [give_back(member_a, "P1", amount).points for amount in ("3.33", "3.33", "3.34")]

    # running proportions of 10: 3.33 -> 3; 6.66 -> 7 (4 more); 10 -> 10 (3 more)
    assert taken == [3, 4, 3]
    assert account(member_a).balance == 0


def test_a_return_larger_than_the_purchase_takes_back_only_what_it_earned(member_a):
    buy(member_a, "20.00", reference="P1")  # 20 points
    buy(member_a, "50.00", reference="P2")  # 50 points

    result = give_back(member_a, "P1", "75.00")

    assert result.points == 20
    assert result.posting.entry.breakdown["returned_amount"] == "20.00"
    assert account(member_a).balance == 50


def test_a_return_after_a_partial_one_takes_only_the_rest(member_a):
    buy(member_a, "20.00", reference="P1")

    first = give_back(member_a, "P1", "15.00")
    rest = give_back(member_a, "P1", "50.00")

    # 15/20 of 20 = 15; then the 5 left
    assert (first.points, rest.points) == (15, 5)
    assert rest.posting.entry.breakdown["returned_amount"] == "5.00"


def test_returns_reported_by_two_channels_never_take_back_more_than_it_earned(member_a):
    buy(member_a, "20.00", reference="P1")
    buy(member_a, "30.00", reference="P2")

    from_the_till = give_back(member_a, "P1", "20.00", reference="TILL-9", source=Source.API)
    from_the_import = give_back(member_a, "P1", "20.00", reference="CSV-9", source=Source.IMPORT)

    assert from_the_till.points == 20
    assert from_the_import.points == 0
    assert account(member_a).balance == 30


def test_a_capped_purchase_gives_back_only_what_it_actually_earned(member_a, purchase_rule):
    purchase_rule.cap_per_day = 30
    purchase_rule.save()
    buy(member_a, "50.00", reference="P1")  # 50, capped to 30

    result = give_back(member_a, "P1", "50.00")

    assert result.points == 30
    assert account(member_a).balance == 0


def test_a_return_finds_the_purchase_whatever_spaces_surround_its_reference(member_a):
    # A fixed-width till export pads references; the purchase was recorded as "P1".
    buy(member_a, "20.00", reference="P1      ")

    result = give_back(member_a, "P1      ", "20.00")

    assert result.points == 20
    assert account(member_a).balance == 0


# --- Idempotency ----------------------------------------------------------------------------


def test_a_replayed_return_takes_once(member_a):
    buy(member_a, "20.00", reference="P1")
    first = give_back(member_a, "P1", "10.00", reference="R1")

    again = give_back(member_a, "P1", "10", reference="R1")  # the same amount, spelled differently

    assert again.posting.replayed is True
    assert again.posting.entry.pk == first.posting.entry.pk
    assert again.points == first.points == 10
    assert LedgerEntry.objects.filter(kind=Kind.REVERSE).count() == 1
    assert account(member_a).balance == 10


def test_a_return_reference_reused_for_another_amount_is_a_conflict(member_a):
    buy(member_a, "20.00", reference="P1")
    give_back(member_a, "P1", "10.00", reference="R1")
    before = everything()

    with pytest.raises(IdempotencyConflict):
        give_back(member_a, "P1", "5.00", reference="R1")

    assert everything() == before


# --- Pending points ---------------------------------------------------------------------


def test_a_return_within_the_pending_period_takes_from_pending_points(member_a, program_a):
    program_a.pending_days = 30
    program_a.save()
    # Relative to now so that the points are still pending whenever the test runs.
    buy(member_a, "40.00", reference="P1", at=timezone.now() - timedelta(hours=1))
    assert (account(member_a).balance, account(member_a).pending) == (0, 40)

    half = give_back(member_a, "P1", "20.00")

    assert half.points == 20
    assert (half.posting.entry.points, half.posting.entry.pending_points) == (0, -20)
    assert (account(member_a).balance, account(member_a).pending) == (0, 20)

    give_back(member_a, "P1", "20.00")

    assert (account(member_a).balance, account(member_a).pending) == (0, 0)
    # The emptied pending lot is closed: activation will never make it spendable.
    lot = PointLot.objects.get(entry__idempotency_key="activity:purchase:P1")
    assert (lot.remaining, lot.pending) == (0, False)


# --- Points already spent --------------------------------------------------------------


def test_with_debt_allowed_a_return_of_spent_points_leaves_a_debt_the_next_purchase_settles(
    member_a, allow_debt
):
    buy(member_a, "100.00", reference="P1")
    spend(member_a, 100)

    result = give_back(member_a, "P1", "100.00")

    assert (result.points, result.shortfall) == (100, 0)
    assert account(member_a).balance == -100
    assert not PointsShortfall.objects.exists()

    buy(member_a, "60.00", reference="P2")
    assert account(member_a).balance == -40  # 60 of the 100 owed paid off

    buy(member_a, "150.00", reference="P3")
    assert account(member_a).balance == 110  # the last 40 owed, then 110 to spend


def test_with_debt_forbidden_the_available_part_is_taken_and_the_rest_flagged(member_a):
    buy(member_a, "100.00", reference="P1")
    spend(member_a, 70)

    result = give_back(member_a, "P1", "100.00", reference="R1")

    # 100 to take back, 30 left to take
    assert (result.points, result.shortfall) == (30, 70)
    assert result.note == "70 points were already spent; flagged for an agent."
    assert result.posting.entry.points == -30
    assert result.posting.entry.breakdown["shortfall"] == 70
    assert account(member_a).balance == 0
    flag = PointsShortfall.objects.get()
    assert (flag.member, flag.points, flag.reference, flag.status) == (member_a, 70, "R1", "open")
    assert flag.entry.idempotency_key == "activity:purchase:P1"


def test_a_replayed_return_with_a_shortfall_flags_once(member_a):
    buy(member_a, "100.00", reference="P1")
    spend(member_a, 70)
    first = give_back(member_a, "P1", "100.00", reference="R1")

    again = give_back(member_a, "P1", "100.00", reference="R1")

    assert (again.points, again.shortfall) == (30, 70)
    assert again.posting.entry.pk == first.posting.entry.pk
    assert PointsShortfall.objects.count() == 1


def test_with_nothing_left_to_take_the_whole_return_is_flagged_once(member_a):
    buy(member_a, "100.00", reference="P1")
    spend(member_a, 100)

    result = give_back(member_a, "P1", "50.00", reference="R1")
    again = give_back(member_a, "P1", "50.00", reference="R1")

    assert (result.points, result.shortfall, result.posting) == (0, 50, None)
    assert (again.points, again.shortfall, again.posting) == (0, 50, None)
    assert PointsShortfall.objects.get().points == 50
    assert account(member_a).balance == 0


def test_a_flagged_shortfall_counts_as_taken_back_for_the_next_return(member_a):
    buy(member_a, "100.00", reference="P1")
    spend(member_a, 80)
    first = give_back(member_a, "P1", "50.00")  # 50 due, 20 there: 20 taken, 30 flagged
    buy(member_a, "100.00", reference="P2")

    second = give_back(member_a, "P1", "50.00")
    third = give_back(member_a, "P1", "50.00")

    # 100 earned = 20 taken + 30 flagged + the 50 the second half takes
    assert (first.points, first.shortfall) == (20, 30)
    assert (second.points, second.shortfall) == (50, 0)
    assert third.points == 0
    assert account(member_a).balance == 50  # 20 + 100 - 20 - 50


# --- Tiers ------------------------------------------------------------------------------


def test_a_returned_purchase_stops_qualifying_but_does_not_downgrade(member_a, program_a):
    silver = TierFactory(program=program_a, name="Silver", rank=1, threshold=500)
    # A return is recorded when it is posted, so the purchase is recent enough to share its window.
    bought_at = timezone.now() - timedelta(days=1)
    buy(member_a, "500.00", reference="P1", at=bought_at)
    member_a.refresh_from_db()
    assert member_a.tier == silver

    give_back(member_a, "P1", "200.00")

    assert tiers.qualifying_points(member=member_a, at=timezone.now()) == 300  # 500 - 200
    member_a.refresh_from_db()
    assert member_a.tier == silver  # downgrades wait for the review


# --- Refused returns ---------------------------------------------------------------------


def test_an_unknown_purchase_cannot_be_returned(member_a):
    buy(member_a, "20.00", reference="P1")
    before = everything()

    with pytest.raises(PurchaseNotFound) as error:
        give_back(member_a, "NOPE", "10.00")

    assert error.value.field == "original_reference"
    assert error.value.status == 404
    assert everything() == before


def test_another_members_purchase_cannot_be_returned(member_a, member_b):
    buy(member_a, "20.00", reference="P1")
    before = everything()

    with pytest.raises(PurchaseNotFound):
        give_back(member_b, "P1", "10.00")

    assert everything() == before


def test_another_programs_purchase_cannot_be_returned(member_a, member_of_b):
    EarningRuleFactory(program=member_of_b.program)
    buy(member_of_b, "20.00", reference="P1")

    with pytest.raises(PurchaseNotFound):
        give_back(member_a, "P1", "10.00")


def test_an_activity_that_is_not_a_purchase_cannot_be_returned(member_a, program_a):
    EarningRuleFactory.fixed_activity(program=program_a, code="survey", points=50)
    activity_post(member=member_a, code="survey", reference="S1", occurred_at=T, source=Source.API, actor=JOB)

    with pytest.raises(PurchaseNotFound):
        give_back(member_a, "S1", "10.00")


@pytest.mark.parametrize("amount", [None, "", "0", "-1", "1.001", "abc", "NaN", "1e12"])
def test_a_return_with_a_bad_amount_is_refused_and_writes_nothing(member_a, amount):
    buy(member_a, "20.00", reference="P1")
    before = everything()

    with pytest.raises(ApplicationError) as error:
        give_back(member_a, "P1", amount)

    assert error.value.field == "amount"
    assert everything() == before


@pytest.mark.parametrize("reference", ["", "  "])
def test_a_return_needs_its_own_reference(member_a, reference):
    buy(member_a, "20.00", reference="P1")

    with pytest.raises(ApplicationError) as error:
        purchase_return(
            member=member_a,
            original_reference="P1",
            amount="10.00",
            reference=reference,
            source=Source.API,
            actor=JOB,
        )

    assert error.value.field == "reference"


# --- Concurrency (PostgreSQL) ----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_returns_of_one_purchase_never_take_back_more_than_it_earned(member_a):
    buy(member_a, "40.00", reference="P1")  # 40 points
    buy(member_a, "100.00", reference="P2")  # more points, so nothing runs short

    def job(n):
        return lambda: give_back(Member.objects.get(pk=member_a.pk), "P1", "15.00", reference=f"R{n}")

    errors = run_in_threads([job(n) for n in range(6)])

    assert errors == []
    # 6 x 15.00 reported; 40.00 can be returned: 15 + 15 + 10, then nothing
    taken = sorted(
        -points for points in LedgerEntry.objects.filter(kind=Kind.REVERSE).values_list("points", flat=True)
    )
    assert taken == [10, 15, 15]
    assert account(member_a).balance == 100


# --- Challenge and streak bonuses ---------------------------------------------------------


def bonuses(member) -> list[tuple[str, int]]:
    """The member's bonus entries and what is left of each after reversals."""
    return [
        (entry.idempotency_key, entry.points + sum(r.points for r in entry.reversals.all()))
        for entry in LedgerEntry.objects.filter(account__member=member, kind=Kind.BONUS).order_by("pk")
    ]


def test_a_full_return_withdraws_a_challenge_bonus_that_no_longer_holds(member_a, program_a):
    challenge = ChallengeFactory(program=program_a, required_count=3, bonus_points=100)
    for n in range(3):
        buy(member_a, "10.00", reference=f"P{n}", at=T + timedelta(hours=n))
    key = f"challenge:{challenge.pk}:{member_a.pk}"
    assert bonuses(member_a) == [(key, 100)]

    result = give_back(member_a, "P1", "10.00", reference="R1")

    assert result.points == 10
    assert [p.entry.points for p in result.withdrawn] == [-100]
    withdrawal = result.withdrawn[0].entry
    assert withdrawal.idempotency_key == f"withdraw:{key}"
    assert withdrawal.reverses.idempotency_key == key
    assert bonuses(member_a) == [(key, 0)]
    assert account(member_a).balance == 20  # 3 x 10 + 100 - 10 - 100
    assert PurchaseReturn.objects.get(reference="R1").completes_purchase is True


def test_a_partial_return_leaves_the_challenge_bonus_standing(member_a, program_a):
    ChallengeFactory(program=program_a, required_count=3, bonus_points=100)
    for n in range(3):
        buy(member_a, "10.00", reference=f"P{n}", at=T + timedelta(hours=n))

    result = give_back(member_a, "P1", "9.99")

    assert result.withdrawn == ()
    assert [points for _, points in bonuses(member_a)] == [100]


def test_a_bonus_with_actions_to_spare_is_not_withdrawn(member_a, program_a):
    ChallengeFactory(program=program_a, required_count=2, bonus_points=100)
    for n in range(3):
        buy(member_a, "10.00", reference=f"P{n}", at=T + timedelta(hours=n))

    result = give_back(member_a, "P0", "10.00")

    assert result.withdrawn == ()
    assert [points for _, points in bonuses(member_a)] == [100]


def test_a_returned_purchase_no_longer_counts_and_completing_again_pays_again(member_a, program_a):
    challenge = ChallengeFactory(program=program_a, required_count=2, bonus_points=100)
    buy(member_a, "10.00", reference="P1", at=T)
    buy(member_a, "10.00", reference="P2", at=T + timedelta(hours=1))
    give_back(member_a, "P2", "10.00")  # the bonus is withdrawn

    # One counted purchase left: the third brings the count back to two.
    again = buy(member_a, "10.00", reference="P3", at=T + timedelta(hours=2))

    key = f"challenge:{challenge.pk}:{member_a.pk}"
    assert [p.entry.idempotency_key for p in again.bonuses] == [f"{key}#2"]
    assert bonuses(member_a) == [(key, 0), (f"{key}#2", 100)]
    # And a fourth purchase does not pay a third time.
    assert buy(member_a, "10.00", reference="P4", at=T + timedelta(hours=3)).bonuses == ()


def test_without_a_return_the_returned_purchase_would_still_count(member_a, program_a):
    # The counterpart of the test above: an untouched purchase keeps counting, so no repayment.
    ChallengeFactory(program=program_a, required_count=2, bonus_points=100)
    buy(member_a, "10.00", reference="P1", at=T)
    buy(member_a, "10.00", reference="P2", at=T + timedelta(hours=1))

    assert buy(member_a, "10.00", reference="P3", at=T + timedelta(hours=2)).bonuses == ()


def test_a_replayed_return_does_not_withdraw_twice(member_a, program_a):
    ChallengeFactory(program=program_a, required_count=2, bonus_points=100)
    buy(member_a, "10.00", reference="P1", at=T)
    buy(member_a, "10.00", reference="P2", at=T + timedelta(hours=1))
    give_back(member_a, "P2", "10.00", reference="R1")
    before = everything()

    again = give_back(member_a, "P2", "10.00", reference="R1")

    assert again.replayed is True
    assert everything() == before


def test_a_withdrawn_bonus_already_spent_is_flagged_when_debt_is_forbidden(member_a, program_a):
    challenge = ChallengeFactory(program=program_a, required_count=2, bonus_points=100)
    buy(member_a, "10.00", reference="P1", at=T)
    buy(member_a, "10.00", reference="P2", at=T + timedelta(hours=1))
    spend(member_a, 110)  # 120 held: 10 left

    result = give_back(member_a, "P2", "10.00")

    # The return takes its 10; nothing is left for the bonus: all 100 flagged.
    assert (result.points, result.shortfall, result.withdrawn) == (10, 0, ())
    key = f"challenge:{challenge.pk}:{member_a.pk}"
    flag = PointsShortfall.objects.get()
    assert (flag.points, flag.reference, flag.entry.idempotency_key) == (100, f"withdraw:{key}", key)
    assert account(member_a).balance == 0
    # Flagged counts as withdrawn: a further return finds nothing standing and flags nothing more.
    give_back(member_a, "P1", "10.00")  # its own 10 are flagged, the bonus is not again
    assert PointsShortfall.objects.filter(reference__startswith="withdraw:").count() == 1


def test_a_withdrawn_bonus_already_spent_becomes_a_debt_when_allowed(member_a, program_a, allow_debt):
    ChallengeFactory(program=program_a, required_count=2, bonus_points=100)
    buy(member_a, "10.00", reference="P1", at=T)
    buy(member_a, "10.00", reference="P2", at=T + timedelta(hours=1))
    spend(member_a, 120)

    result = give_back(member_a, "P2", "10.00")

    assert [p.entry.points for p in result.withdrawn] == [-100]
    assert account(member_a).balance == -110


def test_a_full_return_breaks_a_streak_and_withdraws_its_bonus(member_a, program_a):
    streak = StreakFactory(program=program_a, length=3, bonus_points=50)
    for n in (10, 11, 12):
        buy(member_a, "10.00", reference=f"D{n}", at=datetime(2026, 3, n, 12, tzinfo=UTC))
    key = f"streak:{streak.pk}:{member_a.pk}:2026-03-10"
    assert bonuses(member_a) == [(key, 50)]

    result = give_back(member_a, "D11", "10.00")

    assert [p.entry.points for p in result.withdrawn] == [-50]
    assert bonuses(member_a) == [(key, 0)]


def test_a_return_outside_a_streaks_run_leaves_its_bonus(member_a, program_a):
    StreakFactory(program=program_a, length=3, bonus_points=50)
    buy(member_a, "10.00", reference="D05", at=datetime(2026, 3, 5, 12, tzinfo=UTC))
    for n in (10, 11, 12):
        buy(member_a, "10.00", reference=f"D{n}", at=datetime(2026, 3, n, 12, tzinfo=UTC))

    result = give_back(member_a, "D05", "10.00")

    assert result.withdrawn == ()
    assert [points for _, points in bonuses(member_a)] == [50]


# --- Expired points ------------------------------------------------------------------------


def test_a_return_takes_nothing_for_points_that_expired(member_a, program_a):
    program_a.expiry_policy = Program.ExpiryPolicy.MONTHS_AFTER_EARN
    program_a.expiry_months = 1
    program_a.save()
    buy(member_a, "100.00", reference="P1")  # 100 points, expire a month later
    buy(member_a, "50.00", reference="P2", at=T + timedelta(days=40))  # 50 points, still live
    spend(member_a, 30)  # from P1's lot, the soonest to expire
    ledger.expire_due_lots(now=T + timedelta(days=45))  # P1's other 70 expire
    assert account(member_a).balance == 50

    result = give_back(member_a, "P1", "100.00")

    # Only the 30 spent are taken back (from P2's lot); the 70 expired left the balance already.
    assert (result.points, result.expired, result.shortfall) == (30, 70, 0)
    assert result.note == "70 points of this purchase had expired; nothing to take back for them."
    assert account(member_a).balance == 20
    assert give_back(member_a, "P1", "100.00").points == 0


# --- A purchase that earned nothing ---------------------------------------------------------


def test_a_return_of_a_purchase_that_earned_nothing_answers_nothing_to_take_back(member_a, purchase_rule):
    purchase_rule.min_amount = Decimal("5.00")
    purchase_rule.save()
    earned = buy(member_a, "2.00", reference="SMALL")
    assert earned.posting is None
    assert UnpaidActivity.objects.filter(reference="SMALL", member=member_a).exists()
    before = everything()

    result = give_back(member_a, "SMALL", "2.00")

    assert (result.points, result.shortfall, result.posting) == (0, 0, None)
    assert result.note == "Nothing to take back: the purchase earned no points."
    assert everything() == before
    # An unknown reference, and another member's unpaid purchase, are still errors.
    with pytest.raises(PurchaseNotFound):
        give_back(member_a, "NEVER", "2.00")


def test_another_members_unpaid_purchase_is_not_found(member_a, member_b, purchase_rule):
    purchase_rule.min_amount = Decimal("5.00")
    purchase_rule.save()
    buy(member_a, "2.00", reference="SMALL")

    with pytest.raises(PurchaseNotFound):
        give_back(member_b, "SMALL", "2.00")


# --- Return references ------------------------------------------------------------------


def test_a_flagged_return_reference_reused_for_another_return_is_a_conflict(member_a):
    buy(member_a, "100.00", reference="P1")
    buy(member_a, "100.00", reference="P2")
    spend(member_a, 200)
    give_back(member_a, "P1", "50.00", reference="R1")  # nothing there: all 50 flagged
    before = everything()

    for other in (("P1", "20.00"), ("P2", "50.00")):
        with pytest.raises(IdempotencyConflict) as error:
            give_back(member_a, other[0], other[1], reference="R1")
        assert error.value.field == "reference"
        assert "already used for a different return" in error.value.message

    assert everything() == before


def test_a_flagged_return_sent_again_is_a_replay(member_a):
    buy(member_a, "100.00", reference="P1")
    spend(member_a, 100)
    first = give_back(member_a, "P1", "50.00", reference="R1")

    again = give_back(member_a, "P1", "50", reference="R1")

    assert again.replayed is True
    assert (again.points, again.shortfall, again.note) == (first.points, first.shortfall, first.note)
    assert PointsShortfall.objects.count() == PurchaseReturn.objects.count() == 1


def test_a_return_that_took_nothing_still_counts_its_amount(member_a):
    buy(member_a, "100.00", reference="P1")
    spend(member_a, 100)
    give_back(member_a, "P1", "50.00")  # all 50 flagged, no reversal
    buy(member_a, "100.00", reference="P2")

    second = give_back(member_a, "P1", "80.00")  # only 50.00 of the purchase are left to return

    assert second.points == 50
    assert second.posting.entry.breakdown["returned_amount"] == "50.00"


# --- Returns recorded before PurchaseReturn existed ---------------------------------------------


def test_the_migration_records_earlier_returns_so_later_ones_add_up(member_a):
    import importlib

    from django.apps import apps
    from django.db import connection

    buy(member_a, "100.00", reference="P1")
    buy(member_a, "100.00", reference="P2")
    give_back(member_a, "P1", "40.00", reference="R1")  # 40 taken
    spend(member_a, 160)
    give_back(member_a, "P2", "50.00", reference="R2")  # nothing there: 50 flagged
    expected = list(
        PurchaseReturn.objects.order_by("pk").values_list(
            "reference", "returned_amount", "points", "shortfall", "completes_purchase"
        )
    )
    # Back to the state before the model: drop the records (PostgreSQL's triggers stand aside
    # for this one statement, inside this test's transaction).
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DELETE FROM loyalty_purchasereturn")
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = DEFAULT")

    importlib.import_module("loyalty.migrations.0009_returns_unpaid_activities").record_earlier_returns(
        apps, None
    )

    rebuilt = list(
        PurchaseReturn.objects.order_by("pk").values_list(
            "reference", "returned_amount", "points", "shortfall", "completes_purchase"
        )
    )
    assert rebuilt == expected
    # And the next return of P1 counts the 40.00 already returned.
    give_back(member_a, "P1", "100.00", reference="R3")
    assert PurchaseReturn.objects.get(reference="R3").returned_amount == Decimal("60.00")
