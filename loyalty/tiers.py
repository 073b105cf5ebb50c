"""Tiers: qualifying points over the program's rolling window, upgrades at once, downgrades at review."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import F, Q, Sum
from django.utils import timezone

from loyalty import notifications
from loyalty.models import LedgerEntry, Member, Tier, TierChange

Kind = LedgerEntry.Kind


def window_start(*, program, at: datetime) -> datetime:
    """Qualifying points count over (window_start, at]."""
    return at - timedelta(days=program.tier_window_days)


def qualifying_in_window(*, since: datetime, at: datetime) -> Q:
    """Entries that qualify over the window (since, at].

    Earned points count by when they were earned. A reversal of them counts while
    the points it reverses do, whenever it was posted (by `at`): a purchase and its
    return enter and leave the window together. Counted by its own date, a return
    would go on lowering the total after its purchase had left the window, and a
    return of a purchase older than the window would lower it at all.
    """
    return Q(kind__in=[Kind.EARN, Kind.BONUS], occurred_at__gt=since, occurred_at__lte=at) | Q(
        kind=Kind.REVERSE,
        reverses__kind__in=[Kind.EARN, Kind.BONUS],
        reverses__occurred_at__gt=since,
        reverses__occurred_at__lte=at,
        occurred_at__lte=at,
    )


def qualifying_points(*, member: Member, at: datetime) -> int:
    since = window_start(program=member.program, at=at)
    total = LedgerEntry.objects.filter(
        qualifying_in_window(since=since, at=at), account__member=member
    ).aggregate(total=Sum(F("points") + F("pending_points")))["total"]
    return total or 0


def best_tier(tiers, points: int) -> Tier | None:
    """The highest-ranked of `tiers` whose threshold the points reach."""
    return max((tier for tier in tiers if tier.threshold <= points), key=lambda tier: tier.rank, default=None)


def tier_for(*, program, points: int) -> Tier | None:
    return best_tier(Tier.objects.filter(program=program), points)


def tier_change_new(
    *, member: Member, old: Tier | None, new: Tier | None, points: int, reason: str, actor_label: str, now
) -> TierChange:
    """The record of a move from `old` to `new`, not yet saved (the review saves many at once)."""
    direction = (
        TierChange.Direction.UPGRADE
        if (new.rank if new else 0) > (old.rank if old else 0)
        else TierChange.Direction.DOWNGRADE
    )
    return TierChange(
        member=member,
        from_tier=old,
        to_tier=new,
        direction=direction,
        qualifying_points=points,
        reason=reason,
        actor_label=actor_label,
        changed_at=now,
    )


def tier_change_notify(change: TierChange) -> None:
    """Tell the member, once the change commits (and once per change)."""
    old, new = change.from_tier, change.to_tier
    notifications.notify(
        member=change.member,
        kind="tier_changed",
        context={"from": old.name if old else None, "to": new.name if new else None, "reason": change.reason},
        dedupe_key=f"tier-change:{change.pk}",
    )


def _change(member: Member, new: Tier | None, points: int, reason: str, actor_label: str, now) -> TierChange:
    change = tier_change_new(
        member=member,
        old=member.tier,
        new=new,
        points=points,
        reason=reason,
        actor_label=actor_label,
        now=now,
    )
    member.tier = new
    member.save(update_fields=["tier"])
    change.save()
    tier_change_notify(change)
    return change


def tier_upgrade_check(*, member: Member, actor_label: str, now: datetime | None = None) -> TierChange | None:
    """Upgrade at once when the member's qualifying points cross a higher threshold; never downgrade here."""
    now = now or timezone.now()
    program_tiers = list(Tier.objects.filter(program_id=member.program_id))
    current_rank = next((tier.rank for tier in program_tiers if tier.pk == member.tier_id), 0)
    if not any(tier.rank > current_rank for tier in program_tiers):
        return None  # already at the top: no need to sum the window
    points = qualifying_points(member=member, at=now)
    best = best_tier(program_tiers, points)
    if best is None or best.rank <= current_rank:
        return None
    return _change(member, best, points, f"Reached {best.threshold} qualifying points", actor_label, now)


def tier_review(*, member: Member, actor_label: str, now: datetime | None = None) -> TierChange | None:
    """The periodic review: the tier the window's points earn, down as well as up."""
    now = now or timezone.now()
    points = qualifying_points(member=member, at=now)
    best = tier_for(program=member.program, points=points)
    if (best.pk if best else None) == member.tier_id:
        return None
    return _change(member, best, points, f"Tier review: {points} qualifying points", actor_label, now)
