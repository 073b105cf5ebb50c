"""The earning service: activities into points through the ledger.

Rules, rounding and minimums; caps in the program's time zone; tier boosts and
upgrades; promotions at the edges of their window; previews; idempotency;
challenges and streaks; and, on PostgreSQL, caps and budgets under concurrency.

Events carry fixed times in the past (`occurred_at=`), so pending and expiry never
depend on the wall clock. Expected points are worked out by hand in comments.
After every test the whole ledger must still balance.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty import ledger
from loyalty.earning import MemberNotActive, UnknownActivity, activity_post, activity_preview
from loyalty.errors import ApplicationError
from loyalty.ledger import Actor, IdempotencyConflict
from loyalty.models import (
    LedgerEntry,
    Member,
    PointsShortfall,
    Promotion,
    PromotionUsage,
    Streak,
    TierChange,
)
from loyalty.services import member_create
from tests.loyalty.factories import (
    ChallengeFactory,
    EarningRuleFactory,
    PromotionFactory,
    StreakFactory,
    TierFactory,
)
from tests.loyalty.ledger_helpers import assert_ledger_consistent, snapshot

PARIS = ZoneInfo("Europe/Paris")
JOB = Actor.job("tests")
Kind = LedgerEntry.Kind
# Tuesday 10 March 2026, 13:00 in Paris (UTC+1 until 29 March).
T = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

_references = itertools.count(1)


def post(member, amount=None, *, code="purchase", at=T, reference=None):
    return activity_post(
        member=member,
        code=code,
        amount=amount,
        occurred_at=at,
        reference=reference or f"ref-{next(_references)}",
        source=LedgerEntry.Source.API,
        actor=JOB,
    )


def everything() -> dict:
    """Every row earning may write: a refused or previewed activity must leave all of it as it was."""
    return {
        "ledger": snapshot(),
        "usage": list(PromotionUsage.objects.order_by("pk").values_list("pk", "points_awarded", "uses")),
        "usage_rows": PromotionUsage.objects.count(),
        "tier_changes": TierChange.objects.count(),
        "tiers": list(Member.objects.order_by("pk").values_list("pk", "tier_id")),
        "shortfalls": PointsShortfall.objects.count(),
    }


def balance(member) -> int:
    member.account.refresh_from_db()
    return member.account.balance


def earn_entries(member):
    return LedgerEntry.objects.filter(account__member=member, kind=Kind.EARN)


@pytest.fixture(autouse=True)
def ledger_stays_consistent(db):
    """Whatever a test did, the books must still balance afterwards."""
    yield
    assert_ledger_consistent()


@pytest.fixture
def purchase_rule(program_a):
    return EarningRuleFactory(program=program_a, activity_code="purchase", name="Purchase")


@pytest.fixture
def silver(program_a):
    return TierFactory(program=program_a, name="Silver", rank=1, threshold=500, multiplier=Decimal("1.5"))


@pytest.fixture
def gold(program_a, silver):
    return TierFactory(program=program_a, name="Gold", rank=2, threshold=1000, multiplier=Decimal("2"))


def set_tier(member, tier):
    member.tier = tier
    member.save(update_fields=["tier"])


# --- Rules, rounding, minimum amounts --------------------------------------------


@pytest.mark.parametrize(
    ("rounding", "amount", "per_unit", "expected"),
    [
        # 10.99 x 1.5 = 16.485
        ("down", "10.99", "1.5", 16),
        ("nearest", "10.99", "1.5", 16),
        ("up", "10.99", "1.5", 17),
        # 10.00 x 1.25 = 12.5: half goes up when rounding to nearest
        ("down", "10.00", "1.25", 12),
        ("nearest", "10.00", "1.25", 13),
        ("up", "10.00", "1.25", 13),
        # 10.00 x 1.5 = 15 exactly: rounding up adds nothing to a whole number
        ("up", "10.00", "1.5", 15),
    ],
)
def test_a_purchase_earns_its_amount_times_the_rate_rounded_as_the_rule_says(
    member_a, program_a, rounding, amount, per_unit, expected
):
    EarningRuleFactory(program=program_a, points_per_unit=Decimal(per_unit), rounding=rounding)

    result = post(member_a, amount)

    assert result.calculation.base == expected
    assert result.calculation.total == expected
    assert result.posting.entry.points == expected
    assert result.posting.entry.breakdown["amount"] == amount
    assert balance(member_a) == expected


def test_an_amount_below_the_minimum_earns_nothing_and_writes_no_entry(member_a, program_a):
    EarningRuleFactory(program=program_a, min_amount=Decimal("20.00"))
    before = everything()

    result = post(member_a, "19.99")

    assert result.posting is None
    assert result.points == 0
    assert result.calculation.total == 0
    assert result.calculation.note == "Below the minimum amount of 20.00."
    assert everything() == before


def test_an_amount_exactly_at_the_minimum_earns(member_a, program_a):
    EarningRuleFactory(program=program_a, min_amount=Decimal("20.00"))

    result = post(member_a, "20.00")

    # 20.00 x 1 point per unit
    assert result.points == 20
    assert balance(member_a) == 20


@pytest.mark.parametrize(
    ("code", "points"),
    [("survey", 50), ("review", 30), ("store_visit", 15)],  # store_visit: the program's own code
)
def test_a_fixed_points_activity_earns_its_points_whatever_the_amount(member_a, program_a, code, points):
    rule = EarningRuleFactory.fixed_activity(program=program_a, code=code, points=points, name=f"Did {code}")

    without_amount = post(member_a, code=code)
    with_amount = post(member_a, "99.00", code=code)

    assert without_amount.points == points
    assert with_amount.points == points
    assert without_amount.posting.entry.reason == f"Did {code}"
    assert without_amount.posting.entry.breakdown["rule_id"] == rule.pk
    assert without_amount.posting.entry.breakdown["activity"] == code
    assert balance(member_a) == 2 * points


def test_the_entry_says_which_rule_and_amount_earned_it(member_a, purchase_rule):
    result = post(member_a, "12.50", reference="TILL-7")

    entry = result.posting.entry
    assert entry.kind == Kind.EARN
    assert entry.reason == "Purchase (12.50 EUR)"
    assert entry.reference == "TILL-7"
    assert entry.actor_label == "job:tests"
    assert entry.occurred_at == T
    assert entry.breakdown["base"] == 12  # 12.50 x 1, rounded down
    assert entry.breakdown["rule_id"] == purchase_rule.pk


def test_an_unknown_activity_is_refused_on_the_type_field(member_a, purchase_rule):
    before = everything()

    with pytest.raises(UnknownActivity) as error:
        post(member_a, code="dance_contest")

    assert error.value.field == "type"
    assert error.value.code == "unknown_activity"
    assert everything() == before


def test_another_programs_activity_is_unknown_here(member_a, purchase_rule, program_b):
    EarningRuleFactory.fixed_activity(program=program_b, code="survey", points=50)

    with pytest.raises(UnknownActivity):
        post(member_a, code="survey")


@pytest.mark.parametrize(
    "window",
    [
        {"is_active": False},
        {"active_from": T + timedelta(seconds=1)},
        # active_until is exclusive: a rule ending at the event's moment no longer applies
        {"active_until": T},
    ],
)
def test_a_rule_that_is_switched_off_or_outside_its_window_is_unknown(member_a, program_a, window):
    EarningRuleFactory.fixed_activity(program=program_a, code="survey", points=50, **window)

    with pytest.raises(UnknownActivity):
        post(member_a, code="survey")


def test_a_rule_applies_from_the_first_moment_of_its_window(member_a, program_a):
    EarningRuleFactory.fixed_activity(
        program=program_a, code="survey", points=50, active_from=T, active_until=T + timedelta(days=1)
    )

    assert post(member_a, code="survey").points == 50


@pytest.mark.parametrize(
    "amount",
    ["-5", "-0.01", "0", "0.00", "10.999", "abc", "", "NaN", float("nan"), "Infinity", "1e9", "10000000.01"],
)
def test_a_bad_amount_is_refused_on_the_amount_field_and_writes_nothing(member_a, purchase_rule, amount):
    PromotionFactory(program=purchase_rule.program, budget_points=100)
    before = everything()

    with pytest.raises(ApplicationError) as error:
        post(member_a, amount)

    assert error.value.field == "amount"
    assert everything() == before


def test_the_largest_amount_allowed_earns(member_a, purchase_rule):
    # 10,000,000.00 x 1
    assert post(member_a, "10000000.00").points == 10_000_000


def test_a_bad_amount_is_refused_in_a_preview_too(member_a, purchase_rule):
    with pytest.raises(ApplicationError) as error:
        activity_preview(member=member_a, code="purchase", amount="12.345", occurred_at=T)

    assert error.value.field == "amount"


def test_a_purchase_needs_an_amount(member_a, purchase_rule):
    with pytest.raises(ApplicationError) as error:
        post(member_a)

    assert error.value.field == "amount"


def test_a_suspended_member_earns_nothing(member_a, purchase_rule):
    member_a.status = Member.Status.SUSPENDED
    member_a.save()
    before = everything()

    with pytest.raises(MemberNotActive):
        post(member_a, "10.00")

    assert everything() == before


def test_an_event_in_the_future_is_refused(member_a, purchase_rule):
    with pytest.raises(ApplicationError) as error:
        post(member_a, "10.00", at=datetime.now(UTC) + timedelta(days=1))

    assert error.value.field == "occurred_at"


@pytest.mark.parametrize("reference", ["", "   "])
def test_an_activity_needs_a_reference(member_a, purchase_rule, reference):
    with pytest.raises(ApplicationError) as error:
        activity_post(
            member=member_a,
            code="purchase",
            amount="10.00",
            occurred_at=T,
            reference=reference,
            source=LedgerEntry.Source.API,
            actor=JOB,
        )

    assert error.value.field == "reference"


# --- Caps, in the program's time zone ---------------------------------------------


def test_a_daily_cap_limits_a_purchase_partly_and_says_so(member_a, program_a):
    EarningRuleFactory(program=program_a, cap_per_day=100)
    post(member_a, "70.00")

    result = post(member_a, "50.00", at=T + timedelta(hours=1))

    # 70 already earned today: room for 30 of the 50
    assert result.calculation.base == 50
    assert result.calculation.capped == 20
    assert result.calculation.total == 30
    assert result.calculation.note == "Limited by the daily cap of 100 points."
    assert result.posting.entry.breakdown["capped"] == 20
    assert result.posting.entry.breakdown["note"] == "Limited by the daily cap of 100 points."
    assert result.points == 30
    assert balance(member_a) == 100


def test_a_cap_that_leaves_nothing_writes_no_entry(member_a, program_a):
    EarningRuleFactory(program=program_a, cap_per_day=100)
    post(member_a, "100.00")
    before = everything()

    result = post(member_a, "10.00", at=T + timedelta(hours=1))

    assert result.posting is None
    assert result.calculation.capped == 10
    assert result.calculation.total == 0
    assert everything() == before


def test_the_daily_cap_resets_at_local_midnight_not_utc_midnight(member_a, program_a):
    EarningRuleFactory(program=program_a, cap_per_day=100)
    post(member_a, "100.00", at=datetime(2026, 3, 10, 12, 0, tzinfo=UTC))

    # 22:30 UTC is 23:30 in Paris: still 10 March there, the cap is full
    late_evening = post(member_a, "10.00", at=datetime(2026, 3, 10, 22, 30, tzinfo=UTC))
    # 23:30 UTC is still 10 March in UTC, but 00:30 on 11 March in Paris: a new day
    after_midnight = post(member_a, "10.00", at=datetime(2026, 3, 10, 23, 30, tzinfo=UTC))

    assert late_evening.posting is None
    assert after_midnight.points == 10
    assert balance(member_a) == 110


def test_the_daily_cap_follows_a_program_west_of_utc(member_of_b, program_b):
    EarningRuleFactory(program=program_b, cap_per_day=100)
    # New York is UTC-4 from 8 March 2026: 02:30 UTC on 11 March is 22:30 on 10 March there
    post(member_of_b, "100.00", at=datetime(2026, 3, 11, 2, 30, tzinfo=UTC))

    # 03:30 UTC: 23:30 on 10 March in New York, the same local day
    same_local_day = post(member_of_b, "10.00", at=datetime(2026, 3, 11, 3, 30, tzinfo=UTC))
    # 04:30 UTC: 00:30 on 11 March in New York
    next_local_day = post(member_of_b, "10.00", at=datetime(2026, 3, 11, 4, 30, tzinfo=UTC))

    assert same_local_day.posting is None
    assert next_local_day.points == 10


def test_a_monthly_cap_limits_and_resets_on_the_local_first_of_the_month(member_a, program_a):
    EarningRuleFactory(program=program_a, cap_per_month=300)
    post(member_a, "200.00", at=datetime(2026, 3, 5, 12, 0, tzinfo=UTC))

    partly = post(member_a, "200.00", at=datetime(2026, 3, 20, 12, 0, tzinfo=UTC))
    # 21:30 UTC on 31 March is 23:30 in Paris (UTC+2 since 29 March): still March
    last_evening = post(member_a, "10.00", at=datetime(2026, 3, 31, 21, 30, tzinfo=UTC))
    # 22:30 UTC on 31 March is 00:30 on 1 April in Paris: a new month
    first_of_april = post(member_a, "10.00", at=datetime(2026, 3, 31, 22, 30, tzinfo=UTC))

    # 200 earned in March: room for 100 of the next 200
    assert partly.calculation.capped == 100
    assert partly.points == 100
    assert partly.calculation.note == "Limited by the monthly cap of 300 points."
    assert last_evening.posting is None
    assert first_of_april.points == 10
    assert balance(member_a) == 310  # 200 + 100 + 10


def test_the_tighter_of_the_daily_and_monthly_caps_wins(member_a, program_a):
    EarningRuleFactory(program=program_a, cap_per_day=100, cap_per_month=150)
    post(member_a, "100.00", at=datetime(2026, 3, 9, 12, 0, tzinfo=UTC))

    result = post(member_a, "80.00", at=datetime(2026, 3, 10, 12, 0, tzinfo=UTC))

    # a new day: 100 of daily room; but 100 of the month's 150 are used: 50 of monthly room
    assert result.calculation.capped == 30
    assert result.points == 50
    assert result.calculation.note == "Limited by the monthly cap of 150 points."


def test_a_cap_counts_only_its_own_rule_and_its_own_member(member_a, member_b, program_a):
    EarningRuleFactory(program=program_a, cap_per_day=100)
    EarningRuleFactory.fixed_activity(program=program_a, code="survey", points=80, cap_per_day=100)
    post(member_a, code="survey")
    post(member_b, "100.00")

    result = post(member_a, "100.00")

    assert result.calculation.capped == 0
    assert result.points == 100


def test_a_cap_also_limits_tier_boost_and_promotion_bonus(member_a, program_a, silver):
    EarningRuleFactory(program=program_a, cap_per_day=100)
    PromotionFactory(program=program_a, bonus_points=30)
    set_tier(member_a, silver)

    result = post(member_a, "60.00")

    # base 60, Silver boost 60 x 0.5 = 30, promotion 30: 120 gross, capped to 100
    assert result.calculation.base == 60
    assert result.calculation.tier_boost == 30
    assert result.calculation.promotions[0].points == 30
    assert result.calculation.capped == 20
    assert result.points == 100


# --- Tiers ---------------------------------------------------------------------------


def test_reaching_the_threshold_exactly_upgrades_at_once_with_a_recorded_reason(
    member_a, purchase_rule, silver
):
    result = post(member_a, "500.00")

    member_a.refresh_from_db()
    assert member_a.tier == silver
    change = TierChange.objects.get(member=member_a)
    assert change.from_tier is None
    assert change.to_tier == silver
    assert change.direction == TierChange.Direction.UPGRADE
    assert change.qualifying_points == 500
    assert change.reason == "Reached 500 qualifying points"
    assert change.actor_label == "job:tests"
    assert change.changed_at == T
    # The crossing posting itself was earned before the upgrade: no boost on it.
    assert result.calculation.tier is None
    assert result.calculation.tier_boost == 0


def test_one_point_under_the_threshold_does_not_upgrade(member_a, purchase_rule, silver):
    post(member_a, "499.00")

    member_a.refresh_from_db()
    assert member_a.tier is None
    assert not TierChange.objects.exists()


def test_the_posting_that_crosses_upgrades_and_the_next_one_is_boosted(member_a, purchase_rule, silver):
    post(member_a, "499.00")
    crossing = post(member_a, "1.00")
    boosted = post(member_a, "33.00")

    assert crossing.calculation.tier_boost == 0
    assert member_a.tier == silver
    # 33 base; Silver's 1.5 adds 33 x 0.5 = 16.5, rounded down to 16
    assert boosted.calculation.tier == "Silver"
    assert boosted.calculation.base == 33
    assert boosted.calculation.tier_boost == 16
    assert boosted.posting.entry.breakdown["tier_boost"] == 16
    assert boosted.points == 49


def test_a_big_purchase_jumps_straight_to_the_highest_tier_it_reaches(member_a, purchase_rule, gold):
    post(member_a, "1200.00")

    member_a.refresh_from_db()
    assert member_a.tier == gold
    assert list(TierChange.objects.values_list("to_tier__name", flat=True)) == ["Gold"]


def test_bonuses_count_towards_the_tier_threshold(member_a, purchase_rule, silver):
    PromotionFactory(program=purchase_rule.program, bonus_points=20)

    post(member_a, "480.00")

    # 480 base + 20 promotion bonus = 500: exactly Silver
    member_a.refresh_from_db()
    assert member_a.tier == silver


def test_posting_never_downgrades(member_a, purchase_rule, gold):
    set_tier(member_a, gold)  # e.g. kept from last year's review, no qualifying points now

    result = post(member_a, "10.00")

    member_a.refresh_from_db()
    assert member_a.tier == gold
    assert not TierChange.objects.exists()
    # Gold's x2 still boosts: 10 + 10
    assert result.points == 20


def test_a_posting_uses_the_members_current_tier_not_the_callers_stale_copy(member_a, purchase_rule, silver):
    stale = Member.objects.get(pk=member_a.pk)  # loaded by a request racing the upgrade below
    post(member_a, "500.00")  # reaches Silver

    result = post(stale, "10.00")

    # Silver's 1.5 adds 10 x 0.5 = 5; the upgrade is recorded once
    assert result.calculation.tier == "Silver"
    assert result.points == 15
    assert TierChange.objects.count() == 1


def test_a_member_suspended_meanwhile_earns_nothing(member_a, purchase_rule):
    stale = Member.objects.get(pk=member_a.pk)
    member_a.status = Member.Status.SUSPENDED
    member_a.save()
    before = everything()

    with pytest.raises(MemberNotActive):
        post(stale, "10.00")

    assert everything() == before


# --- Promotions ----------------------------------------------------------------------


def test_a_multiplier_promotion_multiplies_the_base_points(member_a, purchase_rule):
    promotion = PromotionFactory(
        program=purchase_rule.program, name="Double days", kind=Promotion.Kind.MULTIPLIER, multiplier="2"
    )

    result = post(member_a, "40.00")

    # 40 base, x2 adds 40
    assert result.calculation.promotions[0].points == 40
    assert result.posting.entry.breakdown["promotions"] == [
        {"promotion_id": promotion.pk, "name": "Double days", "points": 40}
    ]
    assert result.points == 80


def test_a_multiplier_promotion_multiplies_the_base_not_the_tier_boost(member_a, purchase_rule, silver):
    PromotionFactory(program=purchase_rule.program, kind=Promotion.Kind.MULTIPLIER, multiplier="1.5")
    set_tier(member_a, silver)

    result = post(member_a, "33.00")

    # base 33; Silver adds floor(33 x 0.5) = 16; the promotion adds floor(33 x 0.5) = 16
    assert result.calculation.tier_boost == 16
    assert result.calculation.promotions[0].points == 16
    assert result.points == 65


def test_a_fixed_bonus_promotion_adds_its_points(member_a, purchase_rule):
    PromotionFactory(program=purchase_rule.program, bonus_points=25)

    result = post(member_a, "40.00")

    assert result.points == 65  # 40 + 25


def test_promotions_add_up_each_on_its_own_line(member_a, purchase_rule):
    double = PromotionFactory(program=purchase_rule.program, kind=Promotion.Kind.MULTIPLIER, multiplier="2")
    bonus = PromotionFactory(program=purchase_rule.program, bonus_points=5)

    result = post(member_a, "10.00")

    assert [(line.promotion_id, line.points) for line in result.calculation.promotions] == [
        (double.pk, 10),
        (bonus.pk, 5),
    ]
    assert result.points == 25  # 10 + 10 + 5


def test_a_promotion_scoped_to_an_activity_ignores_the_others(member_a, purchase_rule):
    EarningRuleFactory.fixed_activity(program=purchase_rule.program, code="survey", points=50)
    PromotionFactory(program=purchase_rule.program, bonus_points=25, activity_codes=["survey"])

    purchase = post(member_a, "40.00")
    survey = post(member_a, code="survey")

    assert purchase.calculation.promotions == ()
    assert purchase.points == 40
    assert survey.points == 75  # 50 + 25


def test_a_promotion_scoped_to_a_tier_applies_only_to_its_members(member_a, member_b, purchase_rule, gold):
    PromotionFactory(program=purchase_rule.program, bonus_points=25, tiers=[gold])
    set_tier(member_b, gold)

    untiered = post(member_a, "10.00")
    golden = post(member_b, "10.00")

    assert untiered.points == 10
    # 10 base, Gold x2 boost 10, promotion 25
    assert golden.points == 45


def test_a_switched_off_promotion_gives_nothing(member_a, purchase_rule):
    PromotionFactory(program=purchase_rule.program, bonus_points=25, is_active=False)

    assert post(member_a, "10.00").points == 10


def test_another_programs_promotion_gives_nothing(member_a, purchase_rule, program_b):
    PromotionFactory(program=program_b, bonus_points=25)

    assert post(member_a, "10.00").points == 10


@pytest.mark.parametrize(
    ("time_zone", "local_start_in_utc"),
    [
        # Paris is UTC+1 in winter: local midnight on 1 March is 23:00 UTC on 28 February
        ("Europe/Paris", datetime(2026, 2, 28, 23, 0, tzinfo=UTC)),
        # New York is UTC-5 in winter: local midnight on 1 March is 05:00 UTC
        ("America/New_York", datetime(2026, 3, 1, 5, 0, tzinfo=UTC)),
    ],
)
def test_a_promotion_starts_at_local_midnight_of_the_program(
    member_a, purchase_rule, program_a, time_zone, local_start_in_utc
):
    program_a.time_zone = time_zone
    program_a.save()
    tz = ZoneInfo(time_zone)
    PromotionFactory(
        program=program_a,
        bonus_points=25,
        starts_at=datetime(2026, 3, 1, tzinfo=tz),
        ends_at=datetime(2026, 4, 1, tzinfo=tz),
    )

    one_minute_before = post(member_a, "10.00", at=local_start_in_utc - timedelta(minutes=1))
    at_the_start = post(member_a, "10.00", at=local_start_in_utc)

    assert one_minute_before.calculation.promotions == ()
    assert one_minute_before.points == 10
    assert at_the_start.points == 35


def test_a_promotion_from_local_midnight_in_paris_starts_at_2300_utc(member_a, purchase_rule):
    PromotionFactory(
        program=purchase_rule.program,
        bonus_points=25,
        starts_at=datetime(2026, 3, 1, tzinfo=PARIS),
        ends_at=datetime(2026, 4, 1, tzinfo=PARIS),
    )

    at_2259 = post(member_a, "10.00", at=datetime(2026, 2, 28, 22, 59, tzinfo=UTC))
    at_2300 = post(member_a, "10.00", at=datetime(2026, 2, 28, 23, 0, tzinfo=UTC))

    assert at_2259.points == 10
    assert at_2300.points == 35


def test_a_promotion_ends_before_its_end_moment_across_a_dst_change(member_a, purchase_rule):
    # It ends at local midnight on 1 April in Paris, after the switch to UTC+2: 22:00 UTC on 31 March.
    PromotionFactory(
        program=purchase_rule.program,
        bonus_points=25,
        starts_at=datetime(2026, 3, 1, tzinfo=PARIS),
        ends_at=datetime(2026, 4, 1, tzinfo=PARIS),
    )

    last_second = post(member_a, "10.00", at=datetime(2026, 3, 31, 21, 59, 59, tzinfo=UTC))
    at_the_end = post(member_a, "10.00", at=datetime(2026, 3, 31, 22, 0, tzinfo=UTC))

    assert last_second.points == 35
    assert at_the_end.points == 10


def test_a_promotion_budget_is_granted_in_part_then_exhausted(member_a, member_b, purchase_rule):
    promotion = PromotionFactory(program=purchase_rule.program, bonus_points=10, budget_points=25)

    first = post(member_a, "10.00")
    second = post(member_b, "10.00")
    third = post(member_a, "10.00")
    fourth = post(member_b, "10.00")

    # 25 of budget: 10, 10, then the 5 left, then nothing
    assert [r.calculation.promotions[0].points for r in (first, second, third)] == [10, 10, 5]
    assert fourth.calculation.promotions == ()
    assert fourth.points == 10
    usage = PromotionUsage.objects.get(promotion=promotion)
    assert (usage.points_awarded, usage.uses) == (25, 3)


def test_a_multiplier_promotion_budget_limits_its_line(member_a, purchase_rule):
    promotion = PromotionFactory(
        program=purchase_rule.program, kind=Promotion.Kind.MULTIPLIER, multiplier="2", budget_points=30
    )

    result = post(member_a, "40.00")

    # x2 would add 40; the budget has 30
    assert result.calculation.promotions[0].points == 30
    assert result.points == 70
    assert PromotionUsage.objects.get(promotion=promotion).points_awarded == 30


def test_a_promotion_stops_after_its_maximum_uses(member_a, member_b, purchase_rule):
    promotion = PromotionFactory(program=purchase_rule.program, bonus_points=10, max_uses=2)

    results = [post(member_a, "10.00"), post(member_b, "10.00"), post(member_a, "10.00")]

    assert [r.points for r in results] == [20, 20, 10]
    usage = PromotionUsage.objects.get(promotion=promotion)
    assert (usage.points_awarded, usage.uses) == (20, 2)


def test_an_activity_that_earns_nothing_spends_no_promotion_budget(member_a, program_a):
    EarningRuleFactory(program=program_a, cap_per_day=15)
    promotion = PromotionFactory(program=program_a, bonus_points=10, budget_points=100)
    post(member_a, "10.00")  # 10 base + 10 bonus, capped to the day's 15: the bonus gave 5

    capped_out = post(member_a, "10.00", at=T + timedelta(hours=1))

    assert capped_out.posting is None
    usage = PromotionUsage.objects.get(promotion=promotion)
    assert (usage.points_awarded, usage.uses) == (5, 1)


def test_a_cap_charges_the_promotion_budget_only_with_the_points_it_let_through(member_a, program_a):
    EarningRuleFactory(program=program_a, cap_per_day=25)
    first = PromotionFactory(program=program_a, bonus_points=10, budget_points=100)
    second = PromotionFactory(program=program_a, bonus_points=10, budget_points=100)

    result = post(member_a, "10.00")  # 10 base + 10 + 10, capped to 25: the last bonus gave 5

    assert (result.calculation.capped, result.points) == (5, 25)
    usage = {u.promotion_id: (u.points_awarded, u.uses) for u in PromotionUsage.objects.all()}
    assert usage == {first.pk: (10, 1), second.pk: (5, 1)}


def test_a_promotion_the_cap_cut_to_nothing_is_neither_charged_nor_used(member_a, program_a):
    EarningRuleFactory(program=program_a, cap_per_day=10)
    promotion = PromotionFactory(program=program_a, bonus_points=10, budget_points=100, max_uses=5)

    result = post(member_a, "10.00")  # 10 base + 10 bonus, capped to 10

    assert result.points == 10
    usage = PromotionUsage.objects.get(promotion=promotion)
    assert (usage.points_awarded, usage.uses) == (0, 0)


# --- Preview ---------------------------------------------------------------------------


@pytest.fixture
def busy_setup(member_a, program_a, silver):
    """A tier boost, two promotions (one with a budget) and a cap that bites: every part at work."""
    EarningRuleFactory(program=program_a, points_per_unit=Decimal("1.5"), rounding="nearest", cap_per_day=150)
    PromotionFactory(program=program_a, kind=Promotion.Kind.MULTIPLIER, multiplier="2", budget_points=20)
    PromotionFactory(program=program_a, bonus_points=15)
    set_tier(member_a, silver)
    return member_a


def test_a_preview_shows_every_part_and_writes_nothing(busy_setup):
    before = everything()

    preview = activity_preview(member=busy_setup, code="purchase", amount="60.99", occurred_at=T)

    # 60.99 x 1.5 = 91.485 -> 91; Silver adds floor(91 x 0.5) = 45; double adds 91, but its budget
    # has 20; the bonus adds 15: 91 + 45 + 20 + 15 = 171 gross, capped at 150 (21 capped)
    assert preview.base == 91
    assert preview.tier == "Silver"
    assert preview.tier_boost == 45
    assert [line.points for line in preview.promotions] == [20, 15]
    assert preview.capped == 21
    assert preview.total == 150
    assert everything() == before


def test_posting_writes_exactly_what_the_preview_showed(busy_setup):
    preview = activity_preview(member=busy_setup, code="purchase", amount="60.99", occurred_at=T)

    result = post(busy_setup, "60.99")

    written = {key: value for key, value in result.posting.entry.breakdown.items() if key != "request"}
    assert written == preview.as_breakdown()
    assert result.posting.entry.points == preview.total
    assert result.calculation == preview


def test_a_preview_of_a_capped_out_activity_says_it_earns_nothing(member_a, program_a):
    EarningRuleFactory(program=program_a, cap_per_day=100)
    post(member_a, "100.00")

    preview = activity_preview(member=member_a, code="purchase", amount="10.00", occurred_at=T)

    assert preview.total == 0
    assert preview.note == "Limited by the daily cap of 100 points."


# --- Idempotency -------------------------------------------------------------------------


def test_the_same_reference_twice_posts_once(member_a, purchase_rule):
    first = post(member_a, "10.00", reference="POS-1")

    again = post(member_a, "10.00", reference="POS-1")

    assert again.posting.replayed is True
    assert again.posting.entry.pk == first.posting.entry.pk
    assert again.calculation == first.calculation
    assert again.bonuses == ()
    assert earn_entries(member_a).count() == 1
    assert balance(member_a) == 10


def test_a_replay_returns_the_original_even_after_the_rules_changed(member_a, purchase_rule):
    first = post(member_a, "10.00", reference="POS-1")
    purchase_rule.points_per_unit = Decimal("3")
    purchase_rule.save()
    PromotionFactory(program=purchase_rule.program, bonus_points=50)

    again = post(member_a, "10.00", reference="POS-1")

    assert again.posting.entry.pk == first.posting.entry.pk
    assert again.calculation.total == 10
    assert balance(member_a) == 10


def test_a_reference_with_surrounding_spaces_is_the_same_reference(member_a, purchase_rule):
    first = post(member_a, "10.00", reference="POS-1")

    again = post(member_a, "10.00", reference="  POS-1 ")

    assert again.posting.entry.pk == first.posting.entry.pk


def test_the_same_amount_written_differently_is_a_replay(member_a, purchase_rule):
    first = post(member_a, "10.50", reference="POS-1")

    again = post(member_a, Decimal("10.5"), reference="POS-1")

    assert again.posting.replayed is True
    assert again.posting.entry.pk == first.posting.entry.pk
    assert balance(member_a) == 10


def test_the_same_moment_written_in_another_time_zone_is_a_replay(member_a, purchase_rule):
    first = post(member_a, "10.00", reference="POS-1", at=T)

    again = post(member_a, "10.00", reference="POS-1", at=T.astimezone(PARIS))

    assert again.posting.entry.pk == first.posting.entry.pk


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "11.00"},
        {"at": T + timedelta(minutes=1)},
    ],
)
def test_the_same_reference_for_a_different_event_is_a_conflict(member_a, purchase_rule, change):
    post(member_a, "10.00", reference="POS-1")
    before = everything()

    with pytest.raises(IdempotencyConflict) as error:
        post(member_a, **{"amount": "10.00", "reference": "POS-1", **change})

    assert error.value.field == "reference"
    assert everything() == before


def test_the_same_reference_for_another_member_is_a_conflict(member_a, member_b, purchase_rule):
    post(member_a, "10.00", reference="POS-1")
    before = everything()

    with pytest.raises(IdempotencyConflict):
        post(member_b, "10.00", reference="POS-1")

    assert everything() == before


def test_the_same_reference_in_another_program_is_another_event(member_a, member_of_b, purchase_rule):
    EarningRuleFactory(program=member_of_b.program)
    post(member_a, "10.00", reference="POS-1")

    other = post(member_of_b, "10.00", reference="POS-1")

    assert other.posting.replayed is False
    assert other.points == 10


# --- Challenges ---------------------------------------------------------------------------


def test_a_challenge_pays_once_at_the_nth_action_and_not_again(member_a, purchase_rule):
    challenge = ChallengeFactory(program=purchase_rule.program, name="Three visits", required_count=3)

    results = [post(member_a, "10.00", at=T + timedelta(hours=i)) for i in range(5)]

    assert [len(result.bonuses) for result in results] == [0, 0, 1, 0, 0]
    bonus = results[2].bonuses[0].entry
    assert bonus.kind == Kind.BONUS
    assert bonus.points == 100
    assert bonus.reason == "Challenge completed: Three visits"
    assert bonus.idempotency_key == f"challenge:{challenge.pk}:{member_a.pk}"
    assert balance(member_a) == 150  # 5 x 10 + 100


def test_a_challenge_counts_only_actions_in_its_window_and_of_its_activity(member_a, purchase_rule):
    EarningRuleFactory.fixed_activity(program=purchase_rule.program, code="survey", points=5)
    ChallengeFactory(
        program=purchase_rule.program,
        required_count=2,
        starts_at=datetime(2026, 3, 1, tzinfo=PARIS),
        ends_at=datetime(2026, 4, 1, tzinfo=PARIS),
    )

    before_window = post(member_a, "10.00", at=datetime(2026, 2, 28, 22, 59, tzinfo=UTC))
    survey = post(member_a, code="survey", at=datetime(2026, 3, 2, tzinfo=UTC))
    first = post(member_a, "10.00", at=datetime(2026, 3, 3, tzinfo=UTC))
    second = post(member_a, "10.00", at=datetime(2026, 3, 4, tzinfo=UTC))

    assert before_window.bonuses == survey.bonuses == first.bonuses == ()
    assert [posting.entry.points for posting in second.bonuses] == [100]


def test_each_member_completes_a_challenge_on_their_own(member_a, member_b, purchase_rule):
    ChallengeFactory(program=purchase_rule.program, required_count=2)
    post(member_a, "10.00")
    post(member_b, "10.00")

    completes_a = post(member_a, "10.00", at=T + timedelta(hours=1))
    completes_b = post(member_b, "10.00", at=T + timedelta(hours=1))

    assert len(completes_a.bonuses) == len(completes_b.bonuses) == 1


# --- Streaks ------------------------------------------------------------------------------


def day(n: int, hour: int = 12) -> datetime:
    """n March 2026 at `hour` UTC (one hour later in Paris)."""
    return datetime(2026, 3, n, hour, 0, tzinfo=UTC)


def streak_bonuses(member) -> list[int]:
    return list(
        LedgerEntry.objects.filter(account__member=member, kind=Kind.BONUS)
        .order_by("pk")
        .values_list("points", flat=True)
    )


def test_a_streak_pays_once_when_the_run_reaches_its_length(member_a, purchase_rule):
    StreakFactory(program=purchase_rule.program, name="Three days", length=3, bonus_points=50)

    results = [post(member_a, "10.00", at=day(n)) for n in (10, 11, 12)]

    assert [len(result.bonuses) for result in results] == [0, 0, 1]
    bonus = results[2].bonuses[0].entry
    assert bonus.reason == "Streak completed: Three days"
    assert bonus.points == 50


def test_another_action_on_the_completing_day_does_not_pay_again(member_a, purchase_rule):
    StreakFactory(program=purchase_rule.program, length=3, bonus_points=50)
    for n in (10, 11, 12):
        post(member_a, "10.00", at=day(n))

    later_that_day = post(member_a, "10.00", at=day(12, hour=18))

    assert later_that_day.bonuses == ()
    assert later_that_day.points == 10
    assert streak_bonuses(member_a) == [50]


def test_a_longer_run_does_not_pay_again_each_day(member_a, purchase_rule):
    StreakFactory(program=purchase_rule.program, length=3, bonus_points=50)

    for n in range(10, 17):  # seven days in a row
        post(member_a, "10.00", at=day(n))

    assert streak_bonuses(member_a) == [50]


def test_a_gap_restarts_the_streak_and_a_new_run_pays_again(member_a, purchase_rule):
    StreakFactory(program=purchase_rule.program, length=3, bonus_points=50)

    paid = [len(post(member_a, "10.00", at=day(n)).bonuses) for n in (10, 11, 12, 13, 15, 16, 17)]

    # 10-13 is one run (paid on the 12th); the 14th is missed; 15-17 is a new run
    assert paid == [0, 0, 1, 0, 0, 0, 1]
    assert streak_bonuses(member_a) == [50, 50]


def test_streak_days_are_the_programs_local_days(member_a, purchase_rule):
    StreakFactory(program=purchase_rule.program, length=3, bonus_points=50)

    # UTC days 10, 11, 12; Paris days 11 (00:30), 11, 12: only two local days
    for moment in (day(10, hour=23) + timedelta(minutes=30), day(11), day(12)):
        post(member_a, "10.00", at=moment)
    assert streak_bonuses(member_a) == []

    completing = post(member_a, "10.00", at=day(13))

    # Paris days 11, 12, 13
    assert len(completing.bonuses) == 1


def test_a_weekly_streak_counts_calendar_weeks(member_a, purchase_rule):
    StreakFactory(program=purchase_rule.program, period=Streak.Period.WEEK, length=2, bonus_points=70)

    tuesday = post(member_a, "10.00", at=day(3))  # week of Monday 2 March
    sunday = post(member_a, "10.00", at=day(8))  # the same week
    monday = post(member_a, "10.00", at=day(9))  # the week of 9 March: two weeks in a row

    assert tuesday.bonuses == sunday.bonuses == ()
    assert [posting.entry.points for posting in monday.bonuses] == [70]


# --- Concurrency (PostgreSQL) -------------------------------------------------------------


def run_in_threads(jobs) -> list[BaseException]:
    """Run each job in its own thread, all released at once; each closes its own connection."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job):
        try:
            barrier.wait(timeout=10)
            job()
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_purchases_of_one_member_never_exceed_the_daily_cap(program_a, member_a):
    EarningRuleFactory(program=program_a, cap_per_day=100)

    def purchase(n):
        def job():
            member = Member.objects.get(pk=member_a.pk)
            post(member, "30.00", at=T + timedelta(minutes=n), reference=f"race-{n}")

        return job

    errors = run_in_threads([purchase(n) for n in range(8)])

    assert errors == []
    # 8 x 30 asked for; the cap lets 100 through: 30 + 30 + 30 + 10, then nothing
    assert balance(member_a) == 100
    assert sorted(earn_entries(member_a).values_list("points", flat=True)) == [10, 30, 30, 30]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_purchases_that_cross_a_threshold_upgrade_once_and_boost_after(program_a, member_a):
    EarningRuleFactory(program=program_a)
    silver = TierFactory(program=program_a, name="Silver", rank=1, threshold=100, multiplier=Decimal("1.5"))

    def purchase(n):
        member = Member.objects.get(pk=member_a.pk)  # each request loaded the member before the race

        def job():
            # One moment for all: each upgrade check then sees every posting committed before it.
            post(member, "30.00", at=T, reference=f"race-{n}")

        return job

    errors = run_in_threads([purchase(n) for n in range(8)])

    assert errors == []
    assert list(TierChange.objects.values_list("to_tier", flat=True)) == [silver.pk]
    # Postings run one at a time: three of 30 (90), the fourth reaches 120 and upgrades,
    # the last four earn 30 + 15 boost: 4 x 30 + 4 x 45 = 300
    assert sorted(earn_entries(member_a).values_list("points", flat=True)) == [30] * 4 + [45] * 4
    assert balance(member_a) == 300


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_members_never_spend_more_than_a_promotion_budget(program_a):
    EarningRuleFactory(program=program_a)
    promotion = PromotionFactory(program=program_a, bonus_points=10, budget_points=25)
    members = [
        member_create(program=program_a, first_name=f"Racer {n}", last_name="Member") for n in range(4)
    ]

    def purchase(member):
        def job():
            post(Member.objects.get(pk=member.pk), "10.00")

        return job

    errors = run_in_threads([purchase(member) for member in members])

    assert errors == []
    awarded = [
        line["points"]
        for breakdown in LedgerEntry.objects.filter(kind=Kind.EARN).values_list("breakdown", flat=True)
        for line in breakdown["promotions"]
    ]
    # 25 of budget in bonuses of 10: 10 + 10 + 5, and one member gets none
    assert sorted(awarded) == [5, 10, 10]
    usage = PromotionUsage.objects.get(promotion=promotion)
    assert (usage.points_awarded, usage.uses) == (25, 3)
    assert sum(balance(member) for member in members) == 4 * 10 + 25
    assert ledger.reconcile() == []


# --- Cost of a posting -----------------------------------------------------------------------


def loyalty_statements(queries) -> list[str]:
    """The statements a posting sends to loyalty's tables (receivers of other apps not counted)."""
    return [q["sql"] for q in queries.captured_queries if "loyalty_" in q["sql"]]


@pytest.mark.parametrize("earlier", [1, 40])
def test_a_purchase_posts_in_a_fixed_handful_of_statements(member_a, program_a, silver, earlier):
    EarningRuleFactory(program=program_a, cap_per_day=100_000)
    PromotionFactory(program=program_a, bonus_points=3)  # running, no budget
    PromotionFactory(program=program_a, bonus_points=5, tiers=[silver])  # for Silver only
    set_tier(member_a, silver)
    for n in range(earlier):
        post(member_a, "10.00", at=T - timedelta(hours=n + 1))
    member = Member.objects.select_related("program", "tier", "account").get(pk=member_a.pk)

    with CaptureQueriesContext(connection) as queries:
        result = post(member, "10.00")

    # 10 base + 5 Silver boost + 3 + 5 from the promotions
    assert result.points == 23
    # Lock, member and tier, earlier-event check, rule, promotions, cap sum, then the ledger's
    # lock, entry, lot and account update, challenges and streaks, tiers.
    assert len(loyalty_statements(queries)) == 12, "\n".join(loyalty_statements(queries))


# --- Events that earn nothing ------------------------------------------------------------------


def test_an_event_that_earned_nothing_keeps_its_reference(member_a, program_a):
    from loyalty import signals
    from loyalty.models import UnpaidActivity

    EarningRuleFactory(program=program_a, min_amount=Decimal("5.00"))
    announced = []

    def receiver(sender, reference, **kwargs):
        announced.append(reference)

    signals.activity_posted.connect(receiver)
    try:
        first = post(member_a, "2.00", reference="SMALL")
        again = post(member_a, "2", reference="SMALL")  # the same event, retried
        with pytest.raises(IdempotencyConflict):
            post(member_a, "50.00", reference="SMALL")  # another event with that reference
    finally:
        signals.activity_posted.disconnect(receiver)

    assert first.posting is again.posting is None
    assert first.calculation == again.calculation
    assert again.calculation.note == "Below the minimum amount of 5.00."
    assert announced == ["SMALL"]
    assert UnpaidActivity.objects.filter(member=member_a, reference="SMALL").count() == 1
    assert not LedgerEntry.objects.filter(account__member=member_a).exists()
