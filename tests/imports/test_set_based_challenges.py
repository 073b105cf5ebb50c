"""A running challenge no longer sends a chunk's earnings one by one: only the earning that can
complete it is posted by `activity_post` itself; before and after it (the bonus standing) they
are written set-based. (That the results are the same is the twin-program equivalence test's.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loyalty import earning
from loyalty.earning import Activity, activities_post, activity_post
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry
from loyalty.services import member_create
from tests.loyalty.factories import ChallengeFactory, EarningRuleFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ACTOR = Actor(label="import:test.csv")


@pytest.fixture
def posted_alone(monkeypatch):
    """The references `activity_post` was called for by `activities_post`."""
    seen: list[str] = []

    def spy(**kwargs):
        seen.append(kwargs["reference"])
        return activity_post(**kwargs)

    monkeypatch.setattr(earning, "activity_post", spy)
    return seen


def _purchases(member, prefix: str, count: int, first: int = 0) -> list[Activity]:
    return [
        Activity(
            member=member,
            code="purchase",
            reference=f"{prefix}-{n}",
            amount="20",
            occurred_at=START + timedelta(hours=n),
        )
        for n in range(first, first + count)
    ]


def _challenge_bonuses(member) -> int:
    return LedgerEntry.objects.filter(
        account=member.account, kind="bonus", idempotency_key__startswith="challenge:"
    ).count()


def test_only_the_completing_earning_is_posted_alone(program_a, posted_alone):
    EarningRuleFactory(program=program_a)
    ChallengeFactory(program=program_a, required_count=3, bonus_points=50)
    fresh = member_create(program=program_a, first_name="F", last_name="Resh")
    done = member_create(program=program_a, first_name="D", last_name="One")
    for activity in _purchases(done, "EARLIER", 3):  # completes the challenge before the chunk
        earning.activity_post(
            member=done,
            code="purchase",
            reference=activity.reference,
            amount="20",
            occurred_at=activity.occurred_at,
            source="api",
            actor=ACTOR,
        )
    assert _challenge_bonuses(done) == 1
    posted_alone.clear()

    chunk = [
        a
        for pair in zip(_purchases(fresh, "F", 5), _purchases(done, "D", 5, first=3), strict=True)
        for a in pair
    ]
    results = activities_post(activities=chunk, source="import", actor=ACTOR)

    assert all(isinstance(result, earning.ActivityResult) for result in results)
    assert posted_alone == ["F-2"]  # the fresh member's third purchase; the rest set-based
    assert _challenge_bonuses(fresh) == 1 and _challenge_bonuses(done) == 1
    fresh.account.refresh_from_db()
    assert fresh.account.balance == 5 * 20 + 50
