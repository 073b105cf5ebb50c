"""Shared helpers for the ledger tests: short posting calls, a fixed clock, and an
invariants checker that recomputes everything from the rows, independently of
`ledger.reconcile()` (which it also runs)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Max, Sum

from loyalty import ledger
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, PointAllocation, PointLot, PointsAccount

Kind = LedgerEntry.Kind
Source = LedgerEntry.Source

JOB = Actor.job("tests")
# A fixed clock: tests pass `now=` so expiry and pending never depend on the wall clock.
T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)

_keys = itertools.count(1)


def new_key(prefix: str = "k") -> str:
    return f"{prefix}-{next(_keys)}"


def days(n: float) -> timedelta:
    return timedelta(days=n)


def earn(account: PointsAccount, points: int, *, key: str | None = None, now=T0, **kwargs):
    kwargs.setdefault("reason", "Purchase")
    kwargs.setdefault("actor", JOB)
    kwargs.setdefault("source", Source.API)
    return ledger.credit(
        account=account, points=points, idempotency_key=key or new_key("earn"), now=now, **kwargs
    )


def redeem(account: PointsAccount, points: int, *, key: str | None = None, now=T0, **kwargs):
    kwargs.setdefault("reason", "Reward")
    kwargs.setdefault("actor", JOB)
    kwargs.setdefault("source", Source.PORTAL)
    return ledger.debit(
        account=account, points=points, idempotency_key=key or new_key("redeem"), now=now, **kwargs
    )


def take_back(entry: LedgerEntry, *, points: int | None = None, key: str | None = None, now=T0, **kwargs):
    kwargs.setdefault("reason", "Purchase returned")
    kwargs.setdefault("actor", JOB)
    kwargs.setdefault("source", Source.API)
    return ledger.reverse(
        entry=entry, points=points, idempotency_key=key or new_key("reverse"), now=now, **kwargs
    )


def give_back(entry: LedgerEntry, *, key: str | None = None, now=T0, **kwargs):
    kwargs.setdefault("reason", "Redemption cancelled")
    kwargs.setdefault("actor", JOB)
    kwargs.setdefault("source", Source.AGENT)
    return ledger.refund(entry=entry, idempotency_key=key or new_key("refund"), now=now, **kwargs)


@dataclass(frozen=True)
class Snapshot:
    """Everything a refused write must leave as it was."""

    accounts: tuple
    entries: int
    lots: tuple
    allocations: int


def snapshot() -> Snapshot:
    return Snapshot(
        accounts=tuple(
            PointsAccount.objects.order_by("pk").values_list(
                "pk", "balance", "pending", "lifetime_earned", "lifetime_redeemed", "lifetime_expired"
            )
        ),
        entries=LedgerEntry.objects.count(),
        lots=tuple(PointLot.objects.order_by("pk").values_list("pk", "remaining", "expired", "pending")),
        allocations=PointAllocation.objects.count(),
    )


def live_lots(account: PointsAccount) -> dict[int, int]:
    """Remaining points of the account's spendable lots, by lot id."""
    return dict(
        PointLot.objects.filter(account=account, pending=False, remaining__gt=0).values_list(
            "pk", "remaining"
        )
    )


def ledger_problems(accounts=None) -> list[str]:
    """Every broken ledger invariant, recomputed from the rows in a fixed number of queries.

    Checks, per account: balance and pending are the sums of the entries and agree
    with the last entry; spendable lots hold exactly max(balance, 0) and pending lots
    exactly `pending`; lifetime_expired is what the expire entries took; each entry's
    balance_after and pending_after follow from the entry before it. Per lot:
    0 <= remaining <= original and remaining == original - allocated - expired; an
    expired lot was expired by exactly one entry, whose points are what its lots lost.
    Per entry: a reason and an actor. And `ledger.reconcile()` finds nothing.
    """
    problems = [f"reconcile: {d}" for d in ledger.reconcile()]
    account_qs = PointsAccount.objects.all()
    if accounts is not None:
        account_qs = account_qs.filter(pk__in=[a.pk for a in accounts])
    rows = {a.pk: a for a in account_qs}
    ids = list(rows)

    sums = {
        r["account"]: r
        for r in LedgerEntry.objects.filter(account__in=ids)
        .values("account")
        .annotate(points=Sum("points"), pending=Sum("pending_points"), n=Count("id"))
    }
    last_ids = (
        LedgerEntry.objects.filter(account__in=ids).values("account").annotate(last=Max("id")).values("last")
    )
    last = {
        account_id: (balance_after, pending_after)
        for account_id, balance_after, pending_after in LedgerEntry.objects.filter(
            pk__in=last_ids
        ).values_list("account", "balance_after", "pending_after")
    }
    expired_by_entries = dict(
        LedgerEntry.objects.filter(account__in=ids, kind=Kind.EXPIRE)
        .values("account")
        .annotate(total=Sum("points"))
        .values_list("account", "total")
    )
    live, pend = defaultdict(int), defaultdict(int)
    taken = dict(
        PointAllocation.objects.filter(lot__account__in=ids)
        .values("lot")
        .annotate(total=Sum("points"))
        .values_list("lot", "total")
    )
    expired_per_entry = defaultdict(int)
    for lot in PointLot.objects.filter(account__in=ids).only(
        "account_id", "original", "remaining", "expired", "pending", "expiry_entry_id"
    ):
        (pend if lot.pending else live)[lot.account_id] += lot.remaining
        if not 0 <= lot.remaining <= lot.original:
            problems.append(f"lot {lot.pk}: remaining {lot.remaining} outside 0..{lot.original}")
        expected = lot.original - taken.get(lot.pk, 0) - lot.expired
        if lot.remaining != expected:
            problems.append(
                f"lot {lot.pk}: remaining {lot.remaining} != original - allocated - expired {expected}"
            )
        if lot.expiry_entry_id is not None:
            expired_per_entry[lot.expiry_entry_id] += lot.expired
            if lot.remaining:
                problems.append(f"lot {lot.pk}: expired but {lot.remaining} remain")
        elif lot.expired:
            problems.append(f"lot {lot.pk}: {lot.expired} expired without an expire entry")
    for entry_id, points in LedgerEntry.objects.filter(account__in=ids, kind=Kind.EXPIRE).values_list(
        "pk", "points"
    ):
        lost = expired_per_entry.get(entry_id, 0)
        if -points != lost:
            problems.append(f"expire entry {entry_id}: took {-points} but its lots lost {lost}")

    for pk, account in rows.items():
        s = sums.get(pk, {"points": 0, "pending": 0})
        checks = {
            "balance == sum(entry.points)": (account.balance, s["points"]),
            "pending == sum(entry.pending_points)": (account.pending, s["pending"]),
            "balance == last balance_after": (account.balance, last.get(pk, (0, 0))[0]),
            "pending == last pending_after": (account.pending, last.get(pk, (0, 0))[1]),
            "live lots == max(balance, 0)": (max(account.balance, 0), live[pk]),
            "pending lots == pending": (account.pending, pend[pk]),
            "lifetime_expired == expire entries": (account.lifetime_expired, -expired_by_entries.get(pk, 0)),
        }
        problems += [
            f"account {pk}: {name}: {expected} != {actual}"
            for name, (expected, actual) in checks.items()
            if expected != actual
        ]
        if account.pending < 0:
            problems.append(f"account {pk}: pending {account.pending} is negative")

    # Each entry's balance_after is the previous one plus its points: no lost update.
    running: dict[int, tuple[int, int]] = {}
    for pk, account_id, points, pending_points, balance_after, pending_after in (
        LedgerEntry.objects.filter(account__in=ids)
        .order_by("account", "id")
        .values_list("pk", "account", "points", "pending_points", "balance_after", "pending_after")
    ):
        balance, pending = running.get(account_id, (0, 0))
        balance, pending = balance + points, pending + pending_points
        if (balance, pending) != (balance_after, pending_after):
            problems.append(
                f"entry {pk}: after ({balance_after}, {pending_after}) but the entries add up to "
                f"({balance}, {pending})"
            )
        running[account_id] = (balance_after, pending_after)

    unexplained = LedgerEntry.objects.filter(account__in=ids).filter(reason="") | LedgerEntry.objects.filter(
        account__in=ids, actor_label=""
    )
    problems += [f"entry {pk}: no reason or no actor" for pk in unexplained.values_list("pk", flat=True)]
    return problems


def assert_ledger_consistent(accounts=None) -> None:
    problems = ledger_problems(accounts)
    assert problems == [], "\n".join(problems)
