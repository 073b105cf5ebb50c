"""The periodic tier review over whole programs: the only place members move down a tier.

Earning upgrades a member at once (`tiers.tier_upgrade_check`); the review gives
every member the tier their qualifying points over the rolling window earn, down
as well as up (an upgrade missed for any reason is made here). One aggregate
query per program finds the members whose tier would change; those are then
decided again in chunks, each in one transaction under the members' account
locks (the lock earning holds while it upgrades), so a purchase landing
mid-review cannot be undone by a stale total and two overlapping reviews record
one change. A chunk costs the same few statements however many members change:
one lock, one re-read, one bulk update of the tiers, one bulk insert of their
history and one of the TierChange rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import F, IntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from simple_history.utils import bulk_update_with_history

from loyalty import audit, ledger, tiers
from loyalty.models import LedgerEntry, Member, Program, Tier, TierChange

ACTOR_LABEL = "job:review_tiers"
CHUNK = 500  # members decided per transaction: bounds how long their accounts stay locked


@dataclass
class TierReviewReport:
    members: int = 0
    upgrades: int = 0
    downgrades: int = 0
    changes: list[int] = field(default_factory=list)

    def summary(self) -> dict:
        return {"members": self.members, "upgrades": self.upgrades, "downgrades": self.downgrades}


def _with_qualifying_points(program: Program, at: datetime):
    """The program's reviewable members with their qualifying points at `at`, in one query.

    The definition of `tiers.qualifying_points`, summed for every member at once.
    """
    since = tiers.window_start(program=program, at=at)
    window_total = (
        LedgerEntry.objects.filter(
            tiers.qualifying_in_window(since=since, at=at), account__member=OuterRef("pk")
        )
        .order_by()
        .values("account")
        .annotate(total=Sum(F("points") + F("pending_points")))
        .values("total")
    )
    # Closed memberships keep the tier they closed with; nobody is told about a change.
    return (
        Member.objects.filter(program=program)
        .exclude(status=Member.Status.CLOSED)
        .annotate(points=Coalesce(Subquery(window_total), Value(0), output_field=IntegerField()))
        .order_by("pk")
    )


def _review_chunk(
    program: Program, program_tiers: list[Tier], due: list[tuple[int, int | None]], now: datetime
) -> list[TierChange]:
    """Decide again, under the members' account locks, and record every change of the chunk at once."""
    by_pk = {tier.pk: tier for tier in program_tiers}
    with transaction.atomic():
        account_ids = [account_id for _, account_id in due if account_id is not None]
        if account_ids:
            ledger.lock_accounts(account_ids)
        # Read again after the locks: an upgrade committed since the scan is the tier reviewed,
        # and a member closed meanwhile is left alone.
        members = _with_qualifying_points(program, now).filter(pk__in=[member_id for member_id, _ in due])
        changes, moved = [], []
        for member in members:
            best = tiers.best_tier(program_tiers, member.points)
            if (best.pk if best else None) == member.tier_id:
                continue  # changed meanwhile by a purchase or another review
            changes.append(
                tiers.tier_change_new(
                    member=member,
                    old=by_pk.get(member.tier_id),
                    new=best,
                    points=member.points,
                    reason=f"Tier review: {member.points} qualifying points",
                    actor_label=ACTOR_LABEL,
                    now=now,
                )
            )
            member.tier = best
            moved.append(member)
        if not moved:
            return []
        # Not queryset.update(): every member's tier change gets its history row.
        bulk_update_with_history(
            moved, Member, ["tier"], default_change_reason=audit.current_label() or ACTOR_LABEL
        )
        TierChange.objects.bulk_create(changes)
        for change in changes:
            tiers.tier_change_notify(change)
    return changes


def tiers_review_all(
    *,
    now: datetime | None = None,
    program: Program | None = None,
    progress: Callable[[int], object] | None = None,
) -> TierReviewReport:
    """Review every member of every active program (or only `program`) as of `now`.

    Safe to run again or concurrently: a member already on the right tier is left alone.
    """
    now = now or timezone.now()
    programs = Program.objects.filter(is_active=True).prefetch_related("tiers").order_by("pk")
    if program is not None:
        programs = programs.filter(pk=program.pk)
    report = TierReviewReport()
    for scope in programs:
        program_tiers = list(scope.tiers.all())
        if not program_tiers:
            continue  # nobody can hold a tier the program does not have
        due = []
        rows = _with_qualifying_points(scope, now).values_list("pk", "account", "tier_id", "points")
        for member_id, account_id, tier_id, points in rows.iterator(chunk_size=2000):
            best = tiers.best_tier(program_tiers, points)
            if (best.pk if best else None) != tier_id:
                due.append((member_id, account_id))
            report.members += 1
            if progress:
                progress(1)
        for start in range(0, len(due), CHUNK):
            for change in _review_chunk(scope, program_tiers, due[start : start + CHUNK], now):
                report.changes.append(change.pk)
                if change.direction == TierChange.Direction.UPGRADE:
                    report.upgrades += 1
                else:
                    report.downgrades += 1
    return report
