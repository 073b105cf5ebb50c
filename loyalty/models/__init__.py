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

__all__ = [
    "ImmutableModel",
    "ImmutableQuerySet",
    "ImmutableRecordError",
    "LedgerEntry",
    "Member",
    "PointAllocation",
    "PointLot",
    "PointsAccount",
    "Program",
]
