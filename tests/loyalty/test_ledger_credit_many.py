"""`ledger.credit_many` writes what `ledger.credit` writes, credit by credit, including debts.

Twin accounts start alike; one gets the credits one `credit` call at a time, the other all at
once through `credit_many` (accounts locked by the caller, as the import does).
"""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from loyalty import ledger
from loyalty.ledger import Actor, Credit
from loyalty.models import LedgerEntry, PointAllocation, PointLot, PointsAccount, Program
from loyalty.services import member_create
from tests.loyalty.ledger_helpers import assert_ledger_consistent

pytestmark = pytest.mark.django_db
JOB = Actor.job("test")


@pytest.fixture
def twins(program_a):
    program_a.negative_balance_policy = Program.NegativeBalancePolicy.ALLOW_DEBT
    program_a.pending_days = 0
    program_a.save()
    accounts = []
    for name in ("One", "Many"):
        account = member_create(program=program_a, first_name=name, last_name="Twin").account
        ledger.adjust(
            account=account,
            points=-30,
            reason="Old debt",
            actor=JOB,
            idempotency_key=f"debt-{name}",
            allow_debt=True,
        )
        accounts.append(account)
    return accounts


def _credits(account, prefix):
    return [
        Credit(
            account_id=account.pk, points=20, reason="Purchase", idempotency_key=f"{prefix}-1", source="api"
        ),
        Credit(
            account_id=account.pk, points=25, reason="Purchase", idempotency_key=f"{prefix}-2", source="api"
        ),
        Credit(
            account_id=account.pk,
            points=7,
            reason="Bonus",
            idempotency_key=f"{prefix}-3",
            source="api",
            kind="bonus",
            expires_at=None,
        ),
    ]


def _state(account):
    account = PointsAccount.objects.get(pk=account.pk)
    entries = list(
        LedgerEntry.objects.filter(account=account, kind__in=["earn", "bonus"])
        .order_by("id")
        .values_list("kind", "points", "balance_after", "pending_after")
    )
    lots = list(
        PointLot.objects.filter(account=account)
        .order_by("id")
        .values_list("original", "remaining", "pending")
    )
    settled = sorted(PointAllocation.objects.filter(entry__account=account).values_list("points", flat=True))
    return (account.balance, account.pending, account.lifetime_earned), entries, lots, settled


def test_credit_many_equals_credit_one_at_a_time_and_pays_a_debt_once(twins):
    one, many = twins
    for request in _credits(one, "one"):
        ledger.credit(account=one, actor=JOB, **{k: v for k, v in vars(request).items() if k != "account_id"})
    with transaction.atomic():
        locked = ledger.lock_accounts([many.pk])
        postings = ledger.credit_many(accounts=locked, credits=_credits(many, "many"), actor=JOB)

    assert len(postings) == 3
    assert _state(many) == _state(one)
    balance, _, _ = _state(many)[0]
    assert balance == -30 + 20 + 25 + 7
    # The debt of 30 is paid from the first two lots (20, then 10 of 25), once.
    assert _state(many)[3] == [10, 20]
    assert_ledger_consistent()


def test_a_key_posted_before_is_refused_and_the_whole_call_writes_nothing(twins):
    _, many = twins
    ledger.credit(
        account=many, points=5, reason="Purchase", actor=JOB, idempotency_key="many-2", source="api"
    )
    before = _state(many)
    with pytest.raises(IntegrityError), transaction.atomic():  # the caller handles it
        locked = ledger.lock_accounts([many.pk])
        ledger.credit_many(accounts=locked, credits=_credits(many, "many"), actor=JOB)
    assert _state(many) == before
    assert_ledger_consistent()


def test_pending_credits_wait_like_credit(twins, program_a):
    program_a.pending_days = 14
    program_a.save()
    one, many = twins
    request = _credits(one, "one")[0]
    ledger.credit(account=one, actor=JOB, **{k: v for k, v in vars(request).items() if k != "account_id"})
    with transaction.atomic():
        locked = ledger.lock_accounts([many.pk])
        ledger.credit_many(accounts=locked, credits=_credits(many, "many")[:1], actor=JOB)
    assert _state(many) == _state(one)
    lot = PointLot.objects.get(account=many, original=20)
    assert lot.pending and lot.available_from > lot.entry.posted_at + timedelta(days=13)
