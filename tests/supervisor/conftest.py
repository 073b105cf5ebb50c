"""Fixtures of the supervisor tests: a small, hand-countable history across programs A and B."""

from datetime import UTC, datetime

import pytest

from loyalty import ledger
from loyalty.audit import acting_as
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry

Source = LedgerEntry.Source


def at(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.fixture
def post():
    """ledger.credit / debit / adjust with fixed clock and a unique key."""
    counter = iter(range(1, 10_000))

    def _post(kind: str, account, points: int, *, now: datetime, actor=None, **kwargs):
        actor = actor or Actor.job("tests")
        key = f"{kind}-{next(counter)}"
        if kind == "adjust":
            return ledger.adjust(
                account=account, points=points, reason="Correction", actor=actor, idempotency_key=key, now=now
            ).entry
        function = ledger.debit if kind in ("redeem", "expire") else ledger.credit
        kwargs.setdefault("source", Source.API)
        if function is ledger.credit:
            kwargs.setdefault("available_from", now)
            kwargs.setdefault("expires_at", None)
        return function(
            account=account,
            points=points,
            kind=kind,
            reason=kind,
            actor=actor,
            idempotency_key=key,
            now=now,
            **kwargs,
        ).entry

    return _post


@pytest.fixture
def api_change(member_a):
    """A change made through the integration API, attributed to its key."""
    with acting_as("api:pos-terminal"):
        member_a.phone = "+33 6 00 00 00 01"
        member_a.save()
    return member_a
