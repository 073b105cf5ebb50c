"""Shared helpers for the ledger tests: short posting calls, a fixed clock, and an
invariants checker that recomputes everything from the rows, independently of
`ledger.reconcile()` (which it also runs)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Sum

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
    balance_after and pending_after follow from the entry before it (no lost update).
    Per lot: 0 <= remaining <= original and remaining == original - allocated - expired;
    an expired lot was expired by exactly one entry, whose points are what its lots
    lost. Per entry: a non-blank reason and actor. And `ledger.reconcile()` finds nothing.
    """
    problems = [f"reconcile: {d}" for d in ledger.reconcile()]
    account_qs = PointsAccount.objects.all()
    if accounts is not None:
        account_qs = account_qs.filter(pk__in=[a.pk for a in accounts])
    rows = {a.pk: a for a in account_qs}
    ids = list(rows)

    # One pass over the entries, oldest first per account.
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # sum of points, of pending_points
    last: dict[int, tuple[int, int]] = {}
    expired_by_entries: dict[int, int] = defaultdict(int)
    expire_entries: dict[int, int] = {}
    for pk, account_id, kind, points, pending_points, balance_after, pending_after, reason, actor_label in (
        LedgerEntry.objects.filter(account__in=ids)
        .order_by("account", "id")
        .values_list(
            "pk",
            "account",
            "kind",
            "points",
            "pending_points",
            "balance_after",
            "pending_after",
            "reason",
            "actor_label",
        )
    ):
        before = last.get(account_id, (0, 0))
        if (before[0] + points, before[1] + pending_points) != (balance_after, pending_after):
            problems.append(
                f"entry {pk}: after ({balance_after}, {pending_after}) but the entry before it and its "
                f"points make ({before[0] + points}, {before[1] + pending_points})"
            )
        last[account_id] = (balance_after, pending_after)
        totals[account_id][0] += points
        totals[account_id][1] += pending_points
        if kind == Kind.EXPIRE:
            expired_by_entries[account_id] -= points
            expire_entries[pk] = -points
        if not reason.strip() or not actor_label.strip():
            problems.append(f"entry {pk}: no reason or no actor ({reason!r}, {actor_label!r})")

    taken = dict(
        PointAllocation.objects.filter(lot__account__in=ids)
        .values("lot")
        .annotate(total=Sum("points"))
        .values_list("lot", "total")
    )
    live, pend = defaultdict(int), defaultdict(int)
    expired_per_entry: dict[int, int] = defaultdict(int)
    for pk, account_id, original, remaining, expired, pending, expiry_entry_id in PointLot.objects.filter(
        account__in=ids
    ).values_list("pk", "account", "original", "remaining", "expired", "pending", "expiry_entry"):
        (pend if pending else live)[account_id] += remaining
        if not 0 <= remaining <= original:
            problems.append(f"lot {pk}: remaining {remaining} outside 0..{original}")
        expected = original - taken.get(pk, 0) - expired
        if remaining != expected:
            problems.append(f"lot {pk}: remaining {remaining} != original - allocated - expired {expected}")
        if expiry_entry_id is not None:
            expired_per_entry[expiry_entry_id] += expired
            if remaining:
                problems.append(f"lot {pk}: expired but {remaining} remain")
        elif expired:
            problems.append(f"lot {pk}: {expired} expired without an expire entry")
    for entry_id, took in expire_entries.items():
        lost = expired_per_entry.get(entry_id, 0)
        if took != lost:
            problems.append(f"expire entry {entry_id}: took {took} but its lots lost {lost}")

    for pk, account in rows.items():
        checks = {
            "balance == sum(entry.points)": (account.balance, totals[pk][0]),
            "pending == sum(entry.pending_points)": (account.pending, totals[pk][1]),
            "(balance, pending) == the last entry's": (
                (account.balance, account.pending),
                last.get(pk, (0, 0)),
            ),
            "live lots == max(balance, 0)": (max(account.balance, 0), live[pk]),
            "pending lots == pending": (account.pending, pend[pk]),
            "lifetime_expired == expire entries": (account.lifetime_expired, expired_by_entries[pk]),
        }
        problems += [
            f"account {pk}: {name}: {expected} != {actual}"
            for name, (expected, actual) in checks.items()
            if expected != actual
        ]
        if account.pending < 0:
            problems.append(f"account {pk}: pending {account.pending} is negative")
    return problems


def assert_ledger_consistent(accounts=None) -> None:
    problems = ledger_problems(accounts)
    assert problems == [], "\n".join(problems)
