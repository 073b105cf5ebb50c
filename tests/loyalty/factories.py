"""factory-boy factories for the program rule models.

Every factory needs `program=`: rules belong to one program and a test says which.
Defaults are the plainest rule that does something: one point per currency unit
for a purchase, no caps, no windows, no scope.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import factory
from factory.django import DjangoModelFactory

from loyalty.models import Challenge, EarningRule, Promotion, Streak, Tier


class EarningRuleFactory(DjangoModelFactory):
    class Meta:
        model = EarningRule

    activity_code = "purchase"
    name = factory.LazyAttribute(lambda rule: rule.activity_code.replace("_", " ").capitalize())
    points_per_unit = Decimal("1")
    fixed_points = 0

    @classmethod
    def fixed_activity(cls, *, program, code: str, points: int, **kwargs) -> EarningRule:
        """An activity that earns `points` per occurrence (survey, review, a program's own code)."""
        return cls(
            program=program, activity_code=code, points_per_unit=Decimal("0"), fixed_points=points, **kwargs
        )


class TierFactory(DjangoModelFactory):
    class Meta:
        model = Tier

    name = factory.Sequence(lambda n: f"Tier {n}")
    rank = factory.Sequence(lambda n: n + 1)
    threshold = factory.Sequence(lambda n: (n + 1) * 1000)
    multiplier = Decimal("1.00")


class PromotionFactory(DjangoModelFactory):
    class Meta:
        model = Promotion
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Promotion {n}")
    kind = Promotion.Kind.FIXED_BONUS
    bonus_points = 10
    multiplier = Decimal("1.00")
    starts_at = datetime(2026, 1, 1, tzinfo=UTC)
    ends_at = datetime(2026, 12, 31, tzinfo=UTC)
    activity_codes = factory.LazyFunction(list)

    @factory.post_generation
    def tiers(self, create, extracted, **kwargs):
        if create and extracted:
            self.tiers.set(extracted)


class ChallengeFactory(DjangoModelFactory):
    class Meta:
        model = Challenge

    name = factory.Sequence(lambda n: f"Challenge {n}")
    activity_code = "purchase"
    required_count = 3
    bonus_points = 100
    starts_at = datetime(2026, 1, 1, tzinfo=UTC)
    ends_at = datetime(2026, 12, 31, tzinfo=UTC)


class StreakFactory(DjangoModelFactory):
    class Meta:
        model = Streak

    name = factory.Sequence(lambda n: f"Streak {n}")
    activity_code = "purchase"
    period = Streak.Period.DAY
    length = 3
    bonus_points = 50
