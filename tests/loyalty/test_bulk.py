"""`bulk.bulk_insert_rows` stores what `bulk_create` stores (COPY on PostgreSQL, bulk_create elsewhere)."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from loyalty.bulk import bulk_insert_rows
from loyalty.models import LedgerEntry, PointLot
from loyalty.services import member_create

pytestmark = pytest.mark.django_db


NOW = timezone.now()


def _entries(account, prefix: str, user, now=NOW) -> list[LedgerEntry]:
    return [
        LedgerEntry(
            program_id=account.program_id,
            account=account,
            kind=LedgerEntry.Kind.EARN,
            points=points,
            pending_points=pending,
            balance_after=points,
            pending_after=pending,
            occurred_at=now - timedelta(days=n, microseconds=n),
            posted_at=now,
            source=LedgerEntry.Source.IMPORT,
            reference=f"R-{n}",
            idempotency_key=f"{prefix}:{n}",
            fingerprint="f" * 64,
            reason="Purchase (10.50 EUR) café \\ 'quoted' \t tab",
            actor=user if n == 1 else None,
            actor_label="import:file.csv",
            breakdown={"amount": "10.50", "promotions": [{"name": 'a "b"\n', "points": 2}], "note": None},
        )
        for n, (points, pending) in enumerate([(10, 0), (0, 7), (3, 0)])
    ]


def _stored(model, ids, exclude):
    return [
        {k: v for k, v in row.items() if k not in exclude}
        for row in model.objects.filter(pk__in=ids).order_by("pk").values()
    ]


def _fields(obj) -> dict:
    """The keyword arguments `obj` was built from (relations as instances, as callers pass them)."""
    fields = {f.name: getattr(obj, f.name) for f in obj._meta.concrete_fields if not f.primary_key}
    return {name: value for name, value in fields.items() if value is not None or name == "actor"}


def _insert(objs):
    """The rows `objs` were built from, inserted; the built instances."""
    return bulk_insert_rows(type(objs[0]), [_fields(obj) for obj in objs], build=True)


def test_it_stores_what_bulk_create_stores(program_a, admin_user):
    account = member_create(program=program_a, first_name="A", last_name="B").account
    created = LedgerEntry.objects.bulk_create(_entries(account, "created", admin_user))
    inserted = _insert(_entries(account, "inserted", admin_user))

    assert [e.pk for e in inserted] == sorted(e.pk for e in inserted)
    assert all(not e._state.adding for e in inserted)
    assert LedgerEntry.objects.get(pk=inserted[1].pk).pending_points == 7
    exclude = {"id", "idempotency_key"}
    assert _stored(LedgerEntry, [e.pk for e in inserted], exclude) == _stored(
        LedgerEntry, [e.pk for e in created], exclude
    )

    def lots(entries):
        return [
            PointLot(
                entry=e,
                account=account,
                original=5,
                remaining=5,
                pending=e.pending_points > 0,
                available_from=e.occurred_at,
                expires_at=None if e.pending_points else e.occurred_at + timedelta(days=365),
            )
            for e in entries
        ]

    created_lots = PointLot.objects.bulk_create(lots(created))
    inserted_lots = _insert(lots(inserted))
    assert [lot.entry_id for lot in inserted_lots] == [e.pk for e in inserted]
    exclude = {"id", "entry_id"}
    assert _stored(PointLot, [lot.pk for lot in inserted_lots], exclude) == _stored(
        PointLot, [lot.pk for lot in created_lots], exclude
    )


def test_a_taken_key_is_an_integrity_error(program_a, admin_user):
    account = member_create(program=program_a, first_name="A", last_name="B").account
    _insert(_entries(account, "taken", admin_user))
    with pytest.raises(IntegrityError), transaction.atomic():
        _insert(_entries(account, "taken", admin_user)[1:])
    assert LedgerEntry.objects.filter(idempotency_key__startswith="taken:").count() == 3


def test_rows_store_what_bulk_create_stores(program_a, admin_user):
    account = member_create(program=program_a, first_name="A", last_name="B").account
    created = LedgerEntry.objects.bulk_create(_entries(account, "created", admin_user))
    ids = bulk_insert_rows(LedgerEntry, [_fields(e) for e in _entries(account, "rows", admin_user)])

    assert ids == sorted(ids) and len(ids) == 3
    exclude = {"id", "idempotency_key"}
    assert _stored(LedgerEntry, ids, exclude) == _stored(LedgerEntry, [e.pk for e in created], exclude)

    # A relation by its id, a field left out (PointLot.expired: its default).
    lot = {"account_id": account.pk, "original": 5, "remaining": 5, "pending": True}
    lot |= {"available_from": NOW, "expires_at": None}
    created_lot = PointLot.objects.create(entry=created[0], **lot)
    (lot_id,) = bulk_insert_rows(PointLot, [{"entry_id": ids[0], **lot}])
    assert PointLot.objects.get(pk=lot_id).entry_id == ids[0]
    assert _stored(PointLot, [lot_id], {"id", "entry_id"}) == _stored(
        PointLot, [created_lot.pk], {"id", "entry_id"}
    )


def test_rows_refuse_what_the_model_would(program_a, admin_user):
    account = member_create(program=program_a, first_name="A", last_name="B").account
    row = _fields(_entries(account, "refused", admin_user)[0])
    with pytest.raises(TypeError):
        bulk_insert_rows(LedgerEntry, [{**row, "colour": "red"}])
    unsaved = LedgerEntry(**row)
    with pytest.raises(ValueError), transaction.atomic():
        bulk_insert_rows(PointLot, [{"entry": unsaved, "account": account, "original": 1, "remaining": 1}])
    bulk_insert_rows(LedgerEntry, [row])
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk_insert_rows(LedgerEntry, [row])


def test_built_rows_are_the_instances_the_model_would_build(program_a, admin_user, django_assert_num_queries):
    account = member_create(program=program_a, first_name="A", last_name="B").account
    rows = [_fields(e) for e in _entries(account, "built", admin_user)]
    built = bulk_insert_rows(LedgerEntry, rows, build=True)

    assert [e.pk for e in built] == sorted(e.pk for e in built)
    assert all(not e._state.adding for e in built)
    for entry, row in zip(built, rows, strict=True):
        expected = LedgerEntry(id=entry.pk, **row)
        names = [f.attname for f in LedgerEntry._meta.concrete_fields]
        assert [getattr(entry, n) for n in names] == [getattr(expected, n) for n in names]
    assert _stored(LedgerEntry, [e.pk for e in built], set()) == [
        {f.attname: getattr(e, f.attname) for f in LedgerEntry._meta.concrete_fields} for e in built
    ]
    with django_assert_num_queries(0):  # the relations given are kept, as model(**row) keeps them
        assert [e.account for e in built] == [account] * 3
        assert [e.actor for e in built] == [None, admin_user, None]
