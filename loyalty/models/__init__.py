"""Models of the loyalty app, one module per area; import them from here."""

from loyalty.models.core import (
    ImmutableModel,
    ImmutableQuerySet,
    ImmutableRecordError,
    LedgerEntry,
    Member,
    PointAllocation,
    PointLot,
    PointsAccount,
    Program,
)
from loyalty.models.rewards import Redemption, Reward
from loyalty.models.rules import (
    BUILT_IN_ACTIVITIES,
    PURCHASE,
    Challenge,
    EarningRule,
    MilestoneRule,
    PointsShortfall,
    Promotion,
    PromotionUsage,
    Streak,
    Tier,
    TierChange,
)

__all__ = [
    "BUILT_IN_ACTIVITIES",
    "PURCHASE",
    "Challenge",
    "EarningRule",
    "ImmutableModel",
    "ImmutableQuerySet",
    "ImmutableRecordError",
    "LedgerEntry",
    "Member",
    "MilestoneRule",
    "PointAllocation",
    "PointLot",
    "PointsAccount",
    "PointsShortfall",
    "Program",
    "Promotion",
    "PromotionUsage",
    "Redemption",
    "Reward",
    "Streak",
    "Tier",
    "TierChange",
]
