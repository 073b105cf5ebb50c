"""Milestone bonuses: birthdays and membership anniversaries (once a year), lifetime-points
milestones (once ever per rule), paid through the ledger in each program's own time zone.

The job runs every hour and pays what is due on the program-local date of `now`,
so a birthday is paid soon after local midnight wherever the program is. Members
are found set-based, one query per rule, leaving out those whose bonus for the
period is already in the ledger; posting is then one member at a time. The
ledger's idempotency key is what makes a repeated or concurrent run pay once:
the loser of a race gets the winner's entry back as a replay, which the report
counts apart from real payments.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db import transaction
from django.db.models import CharField, Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from loyalty import ledger, tiers
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, Member, MilestoneRule, Program

logger = logging.getLogger(__name__)

Kind = MilestoneRule.Kind
ACTOR = Actor.job("pay_milestones")


@dataclass
class MilestoneReport:
    """What one run paid. `already_paid` counts postings another run had made first."""

    birthday: int = 0
    anniversary: int = 0
    lifetime: int = 0
    points: int = 0
    already_paid: int = 0
    entries: list[int] = field(default_factory=list)

    @property
    def paid(self) -> int:
        return self.birthday + self.anniversary + self.lifetime

    def summary(self) -> dict:
        return {
            "birthday": self.birthday,
            "anniversary": self.anniversary,
            "lifetime": self.lifetime,
            "points": self.points,
            "already_paid": self.already_paid,
        }


def milestone_key(*, rule: MilestoneRule, member_id: int, year: int) -> str:
    """The idempotency key of one milestone payment: one per member per year, or per rule ever."""
    prefix, suffix = _key_parts(rule, year)
    return f"{prefix}{member_id}{suffix}"


def _key_parts(rule: MilestoneRule, year: int) -> tuple[str, str]:
    # The member's id goes between the two parts. Kept in one place so the key
    # posted and the key the "already paid?" subquery builds in SQL cannot drift.
    if rule.kind == Kind.LIFETIME:
        return f"milestone:lifetime:{rule.pk}:", ""
    return f"milestone:{rule.kind}:", f":{year}"


def _paid_already(rule: MilestoneRule, year: int) -> Exists:
    """True for members whose entry for this milestone and period exists (uses the key's unique index)."""
    prefix, suffix = _key_parts(rule, year)
    parts = [Value(prefix), Cast(OuterRef("pk"), output_field=CharField())]
    if suffix:
        parts.append(Value(suffix))
    key = Concat(*parts, output_field=CharField())
    return Exists(LedgerEntry.objects.filter(program_id=rule.program_id, idempotency_key=key))


def _on_day(field_name: str, day: date) -> Q:
    """Dates whose month and day are `day`'s; 29 February counts as 28 February in non-leap years."""
    same = Q(**{f"{field_name}__month": day.month, f"{field_name}__day": day.day})
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        same |= Q(**{f"{field_name}__month": 2, f"{field_name}__day": 29})
    # A later year than the date itself: nobody has a birthday on the day they are born,
    # nor an anniversary in the year they joined.
    return same & Q(**{f"{field_name}__year__lt": day.year})


def _due_members(rule: MilestoneRule, today: date) -> QuerySet[Member]:
    """One query: the active members this rule pays today and has not paid yet."""
    members = rule.program.members.filter(status=Member.Status.ACTIVE)
    if rule.kind == Kind.BIRTHDAY:
        members = members.filter(_on_day("birth_date", today))
    elif rule.kind == Kind.ANNIVERSARY:
        members = members.filter(_on_day("joined_on", today))
    else:
        members = members.filter(account__lifetime_earned__gte=rule.threshold)
    return members.filter(~_paid_already(rule, today.year)).select_related("account", "tier").order_by("pk")


def _reason(rule: MilestoneRule, member: Member, today: date) -> str:
    # Stable for a given key: the ledger compares a replay's reason with the original's.
    if rule.kind == Kind.BIRTHDAY:
        return f"Birthday bonus {today.year}"
    if rule.kind == Kind.ANNIVERSARY:
        years = today.year - member.joined_on.year
        return f"Membership anniversary bonus: {years} year{'s' if years != 1 else ''} as a member"
    return f"Lifetime milestone bonus: {rule.threshold} points earned"


def _pay(rule: MilestoneRule, member: Member, today: date, now: datetime) -> ledger.Posting | None:
    """Post one member's bonus; a tier the bonus reaches is granted at once, under the same lock."""
    try:
        account = member.account
    except Member.account.RelatedObjectDoesNotExist:
        account = ledger.open_account(member=member)
    key = milestone_key(rule=rule, member_id=member.pk, year=today.year)
    with transaction.atomic():
        try:
            posting = ledger.credit(
                account=account,
                points=rule.points,
                reason=_reason(rule, member, today),
                actor=ACTOR,
                idempotency_key=key,
                source=LedgerEntry.Source.JOB,
                kind=LedgerEntry.Kind.BONUS,
                now=now,
            )
        except ledger.IdempotencyConflict:
            # The key is taken by a payment made with other points (the rule was edited
            # between two racing runs): the milestone is paid, so it is not paid again.
            logger.warning("Milestone %s already paid with different points; not paid again.", key)
            return None
        if not posting.replayed:
            tiers.tier_upgrade_check(member=member, actor_label=ACTOR.label, now=now)
    return posting


def milestones_pay(
    *,
    now: datetime | None = None,
    program: Program | None = None,
    progress: Callable[[int], object] | None = None,
) -> MilestoneReport:
    """Pay every milestone due at `now` (each program's local date), in every active program
    or only `program`. Safe to run any number of times, also concurrently: each pays once."""
    now = now or timezone.now()
    rules = MilestoneRule.objects.filter(is_active=True, program__is_active=True).select_related("program")
    if program is not None:
        rules = rules.filter(program=program)
    report = MilestoneReport()
    for rule in rules.order_by("program_id", "kind", "threshold", "pk"):
        today = timezone.localtime(now, rule.program.tz).date()
        for member in _due_members(rule, today):
            posting = _pay(rule, member, today, now)
            if posting is None or posting.replayed:
                report.already_paid += 1
            else:
                # The report's counters are named after the rule kinds.
                setattr(report, rule.kind, getattr(report, rule.kind) + 1)
                report.points += rule.points
                report.entries.append(posting.entry.pk)
            if progress:
                progress(1)
    return report
