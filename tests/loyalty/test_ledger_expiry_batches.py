"""The expiry job's batches: each entry says exactly what its lots lost, however the batches
cut the accounts; on PostgreSQL a batch is one statement that skips the wait for its commit
to reach the disk, but only in a transaction of its own."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection, transaction

from loyalty import ledger
from loyalty.models import LedgerEntry, PointLot, PointsAccount
from loyalty.services import member_create
from tests.loyalty.ledger_helpers import T0, Kind, assert_ledger_consistent, days, earn, redeem


def _accounts(program, count: int) -> list[PointsAccount]:
    return [
        member_create(program=program, first_name=f"B{n}", last_name="Batch").account for n in range(count)
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("batch_size", [1, 4, ledger.EXPIRY_BATCH_SIZE])
def test_each_expiry_entry_is_made_from_exactly_the_lots_it_closed(program_a, batch_size):
    accounts = _accounts(program_a, 5)
    for n, account in enumerate(accounts):
        earn(account, 40 + n, expires_at=T0 + days(1))
        earn(account, 25, expires_at=T0 + days(2))
        earn(account, 15, expires_at=T0 + days(3))
        redeem(account, 10 + n)  # part of the first lot
        earn(account, 70, expires_at=T0 + days(400))  # not due
        earn(account, 9, expires_at=T0 + days(1), available_from=T0 + days(30))  # pending
    before = {a.pk: (a.balance, a.pending, a.lifetime_expired) for a in PointsAccount.objects.all()}

    report = ledger.expire_due_lots(now=T0 + days(10), batch_size=batch_size)

    assert (report.accounts, report.lots, report.points) == (5, 15, -5 * 70)
    entries = {e.account_id: e for e in LedgerEntry.objects.filter(kind=Kind.EXPIRE)}
    assert sorted(report.entries) == sorted(e.pk for e in entries.values())
    for account in accounts:
        entry = entries[account.pk]
        closed = list(PointLot.objects.filter(expiry_entry=entry).order_by("id"))
        assert [lot.account_id for lot in closed] == [account.pk] * 3
        assert all(lot.remaining == 0 for lot in closed)
        assert entry.points == -sum(lot.expired for lot in closed) == -70
        assert entry.idempotency_key == f"expire:lot:{closed[0].pk}"
        assert entry.occurred_at == max(lot.expires_at for lot in closed) == T0 + days(3)
        assert entry.posted_at == T0 + days(10)
        assert entry.breakdown == {"lots": 3}
        balance, pending, expired = before[account.pk]
        assert (entry.balance_after, entry.pending_after) == (balance - 70, pending)
        after = PointsAccount.objects.get(pk=account.pk)
        assert (after.balance, after.pending, after.lifetime_expired) == (balance - 70, pending, expired + 70)
    # The lasting and the pending lots are untouched.
    assert not PointLot.objects.filter(expires_at__gt=T0 + days(10), expiry_entry__isnull=False).exists()
    assert not PointLot.objects.filter(pending=True, expiry_entry__isnull=False).exists()
    assert_ledger_consistent()


# --- PostgreSQL: commits the job need not wait for ----------------------------------------


def _synchronous_commit_in_batches():
    """Patch the PostgreSQL batch to record the session's synchronous_commit while it runs."""
    seen = []
    real = ledger._expire_batch_postgres

    def batch(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            seen.append(cursor.fetchone()[0])
        return real(*args, **kwargs)

    return seen, mock.patch.object(ledger, "_expire_batch_postgres", batch)


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_expiry_batch_of_its_own_does_not_wait_for_its_commit_to_reach_the_disk(postgres_only, program_a):
    accounts = _accounts(program_a, 3)
    for account in accounts:
        earn(account, 10, expires_at=T0 + days(1))
    setting = _synchronous_commit()
    seen, patch = _synchronous_commit_in_batches()

    with patch:
        report = ledger.expire_due_lots(now=T0 + days(2), batch_size=1)

    assert report.accounts == 3
    assert seen == ["off"] * 3  # every batch, each its own transaction
    assert _synchronous_commit() == setting  # SET LOCAL: gone with the batch's transaction


@pytest.mark.postgres
@pytest.mark.django_db
def test_expiry_inside_a_callers_transaction_leaves_its_durability_alone(postgres_only, program_a):
    (account,) = _accounts(program_a, 1)
    earn(account, 10, expires_at=T0 + days(1))
    seen, patch = _synchronous_commit_in_batches()

    with patch, transaction.atomic():
        setting = _synchronous_commit()
        report = ledger.expire_due_lots(now=T0 + days(2))
        after = _synchronous_commit()

    assert report.lots == 1
    assert seen == [setting] and after == setting
    assert setting != "off"


def _batch_sizes():
    """Patch the job's batch to record how many accounts each batch got."""
    sizes = []
    real = ledger._run_batch

    def batch(job, ids, *args, **kwargs):
        sizes.append(len(ids))
        return real(job, ids, *args, **kwargs)

    return sizes, mock.patch.object(ledger, "_run_batch", batch)


@pytest.mark.django_db
def test_only_the_one_statement_expiry_takes_batches_bigger_than_the_portable_limit(program_a, monkeypatch):
    # The portable batch sends every id as a parameter, and SQLite refuses more than 32,766.
    monkeypatch.setattr(ledger, "PORTABLE_BATCH_SIZE", 2)
    accounts = _accounts(program_a, 5)
    for account in accounts:
        earn(account, 10, expires_at=T0 + days(1))
        earn(account, 10, available_from=T0 + days(1))
    sizes, patch = _batch_sizes()

    with patch:
        expired = ledger.expire_due_lots(now=T0 + days(2), batch_size=100)
        expire_sizes = list(sizes)
        sizes.clear()
        activated = ledger.activate_pending_lots(now=T0 + days(2), batch_size=100)

    assert (expired.accounts, activated.accounts) == (5, 5)
    assert expire_sizes == ([5] if connection.vendor == "postgresql" else [2, 2, 1])
    assert sizes == [2, 2, 1]
    assert_ledger_consistent()


@pytest.mark.django_db
def test_workers_run_one_batch_at_a_time_inside_a_callers_transaction(program_a):
    # Other connections cannot see the caller's uncommitted lots: the job must use the
    # caller's own connection, or it would expire nothing.
    accounts = _accounts(program_a, 3)
    for account in accounts:
        earn(account, 30, expires_at=T0 + days(1))

    report = ledger.expire_due_lots(now=T0 + days(2), batch_size=1, workers=4)

    assert (report.accounts, report.lots, report.points) == (3, 3, -90)
    assert not PointLot.objects.filter(remaining__gt=0).exists()
    assert_ledger_consistent()
