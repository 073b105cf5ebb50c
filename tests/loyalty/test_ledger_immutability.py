"""Ledger entries and allocations are insert-only: the model and its querysets refuse
changes everywhere, and on PostgreSQL a trigger refuses them even from raw SQL."""

import copy

import pytest
from django.db import DatabaseError, connection, transaction

from loyalty.models import LedgerEntry, PointAllocation, PointsAccount
from loyalty.models.core import ImmutableRecordError
from tests.loyalty.ledger_helpers import assert_ledger_consistent, earn, redeem, snapshot

TRIGGER_MESSAGE = "rows are immutable: post a correcting entry instead"


@pytest.fixture
def posted(member_a):
    """An earn and a redemption, so there is an entry and an allocation to tamper with."""
    account = member_a.account
    earn(account, 100)
    spent = redeem(account, 30)
    return spent.entry, PointAllocation.objects.get(entry=spent.entry)


@pytest.fixture
def unchanged(posted):
    """After the test, nothing the ledger wrote has changed."""
    before = snapshot()
    entries = list(LedgerEntry.objects.order_by("pk").values())
    allocations = list(PointAllocation.objects.order_by("pk").values())
    yield
    assert snapshot() == before
    assert list(LedgerEntry.objects.order_by("pk").values()) == entries
    assert list(PointAllocation.objects.order_by("pk").values()) == allocations
    assert_ledger_consistent()


@pytest.mark.parametrize("which", ["entry", "allocation"])
def test_saving_an_existing_row_again_is_refused(posted, unchanged, which):
    row = posted[0] if which == "entry" else posted[1]
    row.points = 1

    with pytest.raises(ImmutableRecordError, match="immutable"):
        row.save()


@pytest.mark.parametrize("which", ["entry", "allocation"])
def test_saving_only_some_fields_of_an_existing_row_is_refused(posted, unchanged, which):
    row = LedgerEntry.objects.get(pk=posted[0].pk) if which == "entry" else posted[1]
    row.points = 1

    with pytest.raises(ImmutableRecordError):
        row.save(update_fields=["points"])


def test_saving_a_copy_of_a_loaded_entry_is_refused(posted, unchanged):
    clone = copy.copy(LedgerEntry.objects.get(pk=posted[0].pk))
    clone.reason = "Rewritten"

    with pytest.raises(ImmutableRecordError):
        clone.save()


@pytest.mark.parametrize("which", ["entry", "allocation"])
def test_deleting_a_row_is_refused(posted, unchanged, which):
    row = posted[0] if which == "entry" else posted[1]

    with pytest.raises(ImmutableRecordError):
        row.delete()


@pytest.mark.parametrize("model", [LedgerEntry, PointAllocation])
def test_a_queryset_refuses_update(posted, unchanged, model):
    with pytest.raises(ImmutableRecordError):
        model.objects.all().update(points=1)
    with pytest.raises(ImmutableRecordError):
        model.objects.filter(pk__gt=0).update(points=0)


@pytest.mark.parametrize("model", [LedgerEntry, PointAllocation])
def test_a_queryset_refuses_delete(posted, unchanged, model):
    with pytest.raises(ImmutableRecordError):
        model.objects.all().delete()
    with pytest.raises(ImmutableRecordError):
        model.objects.filter(pk__gt=0).delete()


def test_saving_a_new_instance_with_an_existing_entry_id_does_not_overwrite_it(posted, unchanged):
    entry = posted[0]
    forged = LedgerEntry(**{f.attname: getattr(entry, f.attname) for f in LedgerEntry._meta.concrete_fields})
    forged.reason = "Rewritten"

    with pytest.raises((ImmutableRecordError, DatabaseError)), transaction.atomic():
        forged.save()
    assert LedgerEntry.objects.get(pk=entry.pk).reason == entry.reason


def test_a_bulk_update_is_refused(posted, unchanged):
    entry = LedgerEntry.objects.get(pk=posted[0].pk)
    entry.reason = "Rewritten"

    # bulk_update runs in a savepoint-less atomic block; ours keeps the test transaction usable.
    with pytest.raises(ImmutableRecordError), transaction.atomic():
        LedgerEntry.objects.bulk_update([entry], ["reason"])


def test_the_related_managers_refuse_update_and_delete(posted, unchanged, member_a):
    account = PointsAccount.objects.get(pk=member_a.account.pk)

    with pytest.raises(ImmutableRecordError):
        account.entries.update(reason="Rewritten")
    with pytest.raises(ImmutableRecordError):
        account.entries.all().delete()
    with pytest.raises(ImmutableRecordError):
        posted[0].allocations.update(points=1)


# --- PostgreSQL: the trigger -------------------------------------------------------


def _raw(sql: str, params) -> None:
    # Each statement in its own savepoint, so the test's transaction survives the error.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("table", "statement"),
    [
        ("loyalty_ledgerentry", "UPDATE loyalty_ledgerentry SET points = 1 WHERE id = %s"),
        ("loyalty_ledgerentry", "UPDATE loyalty_ledgerentry SET reason = 'Rewritten' WHERE id = %s"),
        ("loyalty_ledgerentry", "DELETE FROM loyalty_ledgerentry WHERE id = %s"),
        ("loyalty_pointallocation", "UPDATE loyalty_pointallocation SET points = 1 WHERE id = %s"),
        ("loyalty_pointallocation", "DELETE FROM loyalty_pointallocation WHERE id = %s"),
    ],
)
def test_raw_sql_cannot_update_or_delete_entries_or_allocations(posted, unchanged, table, statement):
    row_id = posted[0].pk if table == "loyalty_ledgerentry" else posted[1].pk

    with pytest.raises(DatabaseError, match=f"{table} {TRIGGER_MESSAGE}"):
        _raw(statement, [row_id])


@pytest.mark.postgres
def test_raw_sql_cannot_rewrite_the_whole_ledger_at_once(posted, unchanged):
    with pytest.raises(DatabaseError, match=TRIGGER_MESSAGE):
        _raw("UPDATE loyalty_ledgerentry SET points = 0 WHERE id > %s", [0])
    with pytest.raises(DatabaseError, match=TRIGGER_MESSAGE):
        _raw("DELETE FROM loyalty_pointallocation WHERE id > %s", [0])


@pytest.mark.postgres
def test_the_trigger_refuses_even_an_update_that_changes_nothing(posted, unchanged):
    with pytest.raises(DatabaseError, match=TRIGGER_MESSAGE):
        _raw("UPDATE loyalty_ledgerentry SET points = points WHERE id = %s", [posted[0].pk])


@pytest.mark.postgres
def test_the_trigger_leaves_inserts_alone(posted, member_a):
    posting = earn(member_a.account, 5)

    assert LedgerEntry.objects.filter(pk=posting.entry.pk).exists()
    assert_ledger_consistent()


# --- Returns and unpaid activities: records written once ------------------------------------


@pytest.fixture
def records(member_a):
    from loyalty.earning import activity_post, purchase_return
    from loyalty.ledger import Actor
    from loyalty.models import EarningRule, PurchaseReturn, UnpaidActivity

    job = Actor.job("tests")
    EarningRule.objects.create(
        program=member_a.program, activity_code="purchase", name="Purchase", points_per_unit=1, min_amount=5
    )
    activity_post(member=member_a, code="purchase", amount="20", reference="P1", source="api", actor=job)
    activity_post(member=member_a, code="purchase", amount="2", reference="P2", source="api", actor=job)
    purchase_return(
        member=member_a, original_reference="P1", amount="5", reference="R1", source="api", actor=job
    )
    return PurchaseReturn.objects.get(), UnpaidActivity.objects.get()


@pytest.mark.parametrize("which", [0, 1])
def test_a_return_or_unpaid_record_cannot_be_changed_or_deleted(records, which):
    row = records[which]
    model = type(row)
    with pytest.raises(ImmutableRecordError):
        row.save()
    with pytest.raises(ImmutableRecordError):
        model.objects.filter(pk=row.pk).update(created_at=row.created_at)
    with pytest.raises(ImmutableRecordError):
        row.delete()


@pytest.mark.postgres
@pytest.mark.parametrize("table", ["loyalty_purchasereturn", "loyalty_unpaidactivity"])
@pytest.mark.parametrize("statement", ["UPDATE {} SET created_at = created_at", "DELETE FROM {}"])
def test_raw_sql_cannot_change_a_return_or_unpaid_record(records, table, statement):
    with (
        pytest.raises(DatabaseError, match=TRIGGER_MESSAGE),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement.format(table))
