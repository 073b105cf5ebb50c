"""Tiers: qualifying points over the rolling window, upgrades at once, downgrades only at review.

The ledger is written directly (`ledger_helpers.earn` and friends) so each test
controls exactly which entries exist and when they occurred; the earning
service's own tier behaviour is tested in test_earning.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from loyalty import notifications, tiers
from loyalty.models import TierChange
from tests.loyalty.factories import TierFactory
from tests.loyalty.ledger_helpers import (
    Kind,
    assert_ledger_consistent,
    earn,
    redeem,
    take_back,
)

T = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def ledger_stays_consistent(db):
    yield
    assert_ledger_consistent()


@pytest.fixture
def silver(program_a):
    return TierFactory(program=program_a, name="Silver", rank=1, threshold=500, multiplier=Decimal("1.5"))


@pytest.fixture
def gold(program_a, silver):
    return TierFactory(program=program_a, name="Gold", rank=2, threshold=1000, multiplier=Decimal("2"))


@pytest.fixture
def told(monkeypatch):
    """The notifications members were sent (after commit), in order."""
    sent = []
    monkeypatch.setattr(
        notifications, "_handlers", [lambda **message: sent.append((message["kind"], message["context"]))]
    )
    return sent


def earned_at(member, points, at):
    """Points earned by an event at `at` (credited then, so never pending)."""
    return earn(member.account, points, occurred_at=at, now=at)


def set_tier(member, tier):
    member.tier = tier
    member.save(update_fields=["tier"])


# --- Qualifying points ---------------------------------------------------------------


def test_earned_and_bonus_points_qualify_but_adjustments_and_redemptions_do_not(member_a):
    earned_at(member_a, 300, T)
    earn(member_a.account, 50, kind=Kind.BONUS, occurred_at=T, now=T)
    earn(member_a.account, 1000, kind=Kind.ADJUST, occurred_at=T, now=T)
    redeem(member_a.account, 200, now=T)

    # 300 earned + 50 bonus; the adjustment and the redemption do not count
    assert tiers.qualifying_points(member=member_a, at=T) == 350


def test_a_reversal_of_earned_points_takes_them_out_of_the_window(member_a):
    purchase = earned_at(member_a, 300, T)
    take_back(purchase.entry, points=120, now=T + timedelta(days=1))

    # 300 - 120
    assert tiers.qualifying_points(member=member_a, at=T + timedelta(days=2)) == 180


def test_pending_points_qualify(member_a, program_a):
    program_a.pending_days = 30
    program_a.save()
    earn(member_a.account, 300, occurred_at=T, now=T)  # waits until 9 April

    assert member_a.account.lots.get().pending is True
    assert tiers.qualifying_points(member=member_a, at=T) == 300


def test_the_window_is_the_programs_rolling_days_up_to_the_moment(member_a, program_a):
    program_a.tier_window_days = 30
    program_a.save()
    earned_at(member_a, 100, T - timedelta(days=30))  # exactly 30 days before: out
    earned_at(member_a, 200, T - timedelta(days=30) + timedelta(seconds=1))  # just inside
    earned_at(member_a, 400, T)  # at the moment itself: in
    earned_at(member_a, 800, T + timedelta(seconds=1))  # after the moment: not yet

    assert tiers.qualifying_points(member=member_a, at=T) == 600  # 200 + 400


def test_other_members_points_do_not_qualify(member_a, member_b):
    earned_at(member_b, 900, T)

    assert tiers.qualifying_points(member=member_a, at=T) == 0


def test_a_return_counts_in_the_window_of_the_purchase_it_returns(member_a, program_a):
    program_a.tier_window_days = 365
    program_a.save()
    bought = T - timedelta(days=300)
    purchase = earned_at(member_a, 500, bought)
    take_back(purchase.entry, points=200, now=T)  # returned 300 days later
    earned_at(member_a, 600, T)

    # On T, both the purchase (net 500 - 200) and today's 600 are in the window
    assert tiers.qualifying_points(member=member_a, at=T) == 900
    # 100 days later the purchase is 400 days old: it and its return leave together, 600 stays
    assert tiers.qualifying_points(member=member_a, at=T + timedelta(days=100)) == 600


def test_a_return_of_a_purchase_older_than_the_window_does_not_count(member_a, program_a):
    program_a.tier_window_days = 365
    program_a.save()
    purchase = earned_at(member_a, 500, T - timedelta(days=400))
    take_back(purchase.entry, points=500, now=T)
    earned_at(member_a, 600, T)

    # The purchase no longer qualifies, so neither does its return
    assert tiers.qualifying_points(member=member_a, at=T) == 600


# --- Which tier -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "tier_name"),
    [(0, None), (499, None), (500, "Silver"), (999, "Silver"), (1000, "Gold"), (50_000, "Gold")],
)
def test_the_tier_is_the_highest_whose_threshold_the_points_reach(program_a, gold, points, tier_name):
    tier = tiers.tier_for(program=program_a, points=points)

    assert (tier.name if tier else None) == tier_name


def test_another_programs_tiers_do_not_apply(program_a, program_b):
    TierFactory(program=program_b, name="Elsewhere", rank=1, threshold=0)

    assert tiers.tier_for(program=program_a, points=10_000) is None


# --- Upgrades ---------------------------------------------------------------------------------


def test_exactly_at_the_threshold_upgrades_with_a_reason(
    member_a, silver, told, django_capture_on_commit_callbacks
):
    earned_at(member_a, 500, T)

    with django_capture_on_commit_callbacks(execute=True):
        change = tiers.tier_upgrade_check(member=member_a, actor_label="job:tests", now=T)

    member_a.refresh_from_db()
    assert member_a.tier == silver
    assert change == TierChange.objects.get()
    assert (change.from_tier, change.to_tier, change.direction) == (
        None,
        silver,
        TierChange.Direction.UPGRADE,
    )
    assert (change.qualifying_points, change.reason) == (500, "Reached 500 qualifying points")
    assert (change.actor_label, change.changed_at) == ("job:tests", T)
    assert told == [
        ("tier_changed", {"from": None, "to": "Silver", "reason": "Reached 500 qualifying points"})
    ]


def test_one_point_under_the_threshold_does_not_upgrade(member_a, silver, told):
    earned_at(member_a, 499, T)

    assert tiers.tier_upgrade_check(member=member_a, actor_label="job:tests", now=T) is None

    member_a.refresh_from_db()
    assert member_a.tier is None
    assert not TierChange.objects.exists()
    assert told == []


def test_an_upgrade_moves_up_from_the_current_tier(member_a, silver, gold):
    set_tier(member_a, silver)
    earned_at(member_a, 1000, T)

    change = tiers.tier_upgrade_check(member=member_a, actor_label="job:tests", now=T)

    assert (change.from_tier, change.to_tier) == (silver, gold)
    assert change.reason == "Reached 1000 qualifying points"


def test_an_upgrade_check_never_downgrades(member_a, silver, gold):
    set_tier(member_a, gold)
    earned_at(member_a, 600, T)  # only Silver's worth

    assert tiers.tier_upgrade_check(member=member_a, actor_label="job:tests", now=T) is None

    member_a.refresh_from_db()
    assert member_a.tier == gold


def test_an_upgrade_check_at_the_current_tier_records_nothing(member_a, silver):
    set_tier(member_a, silver)
    earned_at(member_a, 700, T)

    assert tiers.tier_upgrade_check(member=member_a, actor_label="job:tests", now=T) is None
    assert not TierChange.objects.exists()


def test_an_upgrade_rolled_back_notifies_nobody(member_a, silver, told, django_capture_on_commit_callbacks):
    earned_at(member_a, 500, T)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        tiers.tier_upgrade_check(member=member_a, actor_label="job:tests", now=T)
        raise RuntimeError("the posting failed")

    assert callbacks == []

    assert told == []
    assert not TierChange.objects.exists()


# --- Review -------------------------------------------------------------------------------


def test_the_review_downgrades_to_what_the_window_earns(
    member_a, silver, gold, told, django_capture_on_commit_callbacks
):
    set_tier(member_a, gold)
    earned_at(member_a, 600, T)

    with django_capture_on_commit_callbacks(execute=True):
        change = tiers.tier_review(member=member_a, actor_label="job:review", now=T)

    member_a.refresh_from_db()
    assert member_a.tier == silver
    assert (change.from_tier, change.to_tier, change.direction) == (
        gold,
        silver,
        TierChange.Direction.DOWNGRADE,
    )
    assert change.reason == "Tier review: 600 qualifying points"
    assert told == [
        ("tier_changed", {"from": "Gold", "to": "Silver", "reason": "Tier review: 600 qualifying points"})
    ]


def test_the_review_drops_the_tier_when_the_window_is_empty(member_a, silver):
    set_tier(member_a, silver)
    earned_at(member_a, 900, T - timedelta(days=400))

    change = tiers.tier_review(member=member_a, actor_label="job:review", now=T)

    member_a.refresh_from_db()
    assert member_a.tier is None
    assert (change.to_tier, change.qualifying_points) == (None, 0)
    assert change.direction == TierChange.Direction.DOWNGRADE


def test_the_review_leaves_a_member_on_the_right_tier_alone(member_a, silver):
    set_tier(member_a, silver)
    earned_at(member_a, 500, T)

    assert tiers.tier_review(member=member_a, actor_label="job:review", now=T) is None
    assert not TierChange.objects.exists()


def test_the_review_does_not_downgrade_for_a_return_of_a_purchase_that_left_the_window(
    member_a, program_a, silver
):
    program_a.tier_window_days = 365
    program_a.save()
    purchase = earned_at(member_a, 300, T - timedelta(days=300))
    take_back(purchase.entry, points=300, now=T)
    earned_at(member_a, 550, T)
    set_tier(member_a, silver)

    # 100 days on the returned purchase is out of the window: 550 qualify, Silver stays
    assert tiers.tier_review(member=member_a, actor_label="job:review", now=T + timedelta(days=100)) is None


def test_qualifying_points_as_of_now_by_default_in_the_upgrade_check(member_a, silver):
    earned_at(member_a, 500, timezone.now() - timedelta(days=1))

    change = tiers.tier_upgrade_check(member=member_a, actor_label="job:tests")

    assert change.to_tier == silver
