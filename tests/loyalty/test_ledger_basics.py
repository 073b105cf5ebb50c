import pytest

from loyalty import ledger
from loyalty.ledger import Actor

JOB = Actor.job("test")


@pytest.fixture
def account(member_a):
    return member_a.account


def test_it_credits_and_replays_once(account):
    first = ledger.credit(
        account=account,
        points=100,
        reason="Purchase",
        actor=JOB,
        idempotency_key="p1",
        source="api",
    )
    again = ledger.credit(
        account=account,
        points=100,
        reason="Purchase",
        actor=JOB,
        idempotency_key="p1",
        source="api",
    )
    assert (first.balance, again.replayed, again.entry.pk) == (100, True, first.entry.pk)
    account.refresh_from_db()
    assert account.balance == 100
    assert ledger.reconcile() == []
