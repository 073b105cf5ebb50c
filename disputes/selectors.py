"""Dispute reads: the queue with its SLA flags, one ticket with the member's context, agent KPIs.

Every function runs a fixed number of queries whatever the number of tickets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import (
    Avg,
    BooleanField,
    Case,
    Count,
    ExpressionWrapper,
    Q,
    QuerySet,
    Value,
    When,
)
from django.utils import timezone

from disputes.models import AdjustmentRequest, Comment, Dispute
from disputes.services import CLOSED
from disputes.sla import NEAR_DUE
from loyalty import ledger
from loyalty import selectors as loyalty_selectors
from loyalty.access import get_for_member_or_404, get_for_staff_or_404, scope_to_member, scope_to_staff
from loyalty.models import LedgerEntry, Member, PointsAccount

# --- The queue -------------------------------------------------------------------------


def _running() -> Q:
    """The clock is running: not closed and not waiting on the member."""
    return ~Q(status__in=CLOSED) & Q(paused_at__isnull=True)


def overdue_condition(now: datetime) -> Q:
    return _running() & (
        Q(resolution_due__lt=now) | Q(first_response_at__isnull=True, first_response_due__lt=now)
    )


def near_due_condition(now: datetime) -> Q:
    soon = now + NEAR_DUE
    return (
        _running()
        & ~overdue_condition(now)
        & (Q(resolution_due__lte=soon) | Q(first_response_at__isnull=True, first_response_due__lte=soon))
    )


def _flag(condition: Q):
    return ExpressionWrapper(Case(When(condition, then=Value(True)), default=Value(False)), BooleanField())


def with_sla_flags(queryset: QuerySet[Dispute], *, now: datetime | None = None) -> QuerySet[Dispute]:
    """Annotate `is_overdue` and `is_near_due` (computed in the query, no extra queries)."""
    now = now or timezone.now()
    return queryset.annotate(
        is_overdue=_flag(overdue_condition(now)),
        is_near_due=_flag(near_due_condition(now)),
    )


def dispute_queue(*, user, now: datetime | None = None) -> QuerySet[Dispute]:
    """The tickets of a staff user's programs, most urgent first, with SLA flags (one query per page)."""
    queryset = Dispute.objects.select_related("program", "member", "assignee").order_by(
        "-priority", "resolution_due", "pk"
    )
    return with_sla_flags(scope_to_staff(queryset, user), now=now).annotate(
        pending_adjustments=Count(
            "adjustments", filter=Q(adjustments__status=AdjustmentRequest.Status.PENDING)
        )
    )


def dispute_get(*, user, pk: int) -> Dispute:
    """One ticket of the user's programs (with SLA flags), or a 404."""
    queryset = with_sla_flags(
        Dispute.objects.select_related(
            "program",
            "member__account",
            "member__tier",
            "assignee",
            "related_entry",
            "related_redemption__reward",
            "first_response_by",
            "resolved_by",
        )
    )
    return get_for_staff_or_404(queryset, user, pk=pk)


def dispute_comments(*, dispute: Dispute, include_internal: bool) -> list[Comment]:
    comments = dispute.comments.select_related("author")
    if not include_internal:
        comments = comments.filter(visibility=Comment.Visibility.REPLY)
    return list(comments.order_by("created_at", "pk"))


def dispute_adjustments(*, dispute: Dispute) -> list[AdjustmentRequest]:
    return list(dispute.adjustments.select_related("requested_by", "decided_by", "entry").order_by("pk"))


def pending_adjustments(*, user) -> QuerySet[AdjustmentRequest]:
    """Adjustments of the user's programs awaiting approval, oldest first (the supervisor's queue)."""
    queryset = AdjustmentRequest.objects.filter(status=AdjustmentRequest.Status.PENDING).select_related(
        "program", "dispute__member", "requested_by"
    )
    return scope_to_staff(queryset, user).order_by("requested_at", "pk")


def dispute_history(*, dispute: Dispute, limit: int = 50) -> tuple[list, bool]:
    """Who changed the ticket when, newest first, with the field changes; and whether older ones were cut."""
    records = list(
        dispute.history.select_related("history_user").order_by("-history_date", "-history_id")[: limit + 1]
    )
    older = records[limit] if len(records) > limit else None
    rows = loyalty_selectors.history_rows(
        records[:limit], older=older, excluded=("created_at", "updated_at", "paused_seconds")
    )
    return rows, older is not None


# --- The member's context beside a ticket ------------------------------------------------


@dataclass(frozen=True)
class MemberContext:
    account: PointsAccount
    overview: loyalty_selectors.MemberOverview
    explanation: loyalty_selectors.BalanceExplanation
    on_disputed_date: ledger.BalanceSnapshot | None
    disputed_day_entries: list[LedgerEntry]


def member_context(*, dispute: Dispute, account: PointsAccount, recent: int = 10) -> MemberContext:
    """Balance, pending, recent entries, the explanation, and the balance at the end of the disputed day."""
    snapshot, day_entries = None, []
    if dispute.disputed_on is not None:
        tz = dispute.program.tz
        end = loyalty_selectors.end_of_local_day(dispute.disputed_on, tz)
        snapshot = ledger.balance_as_of(account=account, moment=end)
        start, stop = loyalty_selectors.local_day_bounds(dispute.disputed_on, tz)
        day_entries = loyalty_selectors.entries_posted_between(
            account=account, start=start, end=stop, limit=20
        )
    return MemberContext(
        account=account,
        overview=loyalty_selectors.member_overview(account=account, recent=recent),
        explanation=loyalty_selectors.balance_explanation(account=account, closed_limit=10),
        on_disputed_date=snapshot,
        disputed_day_entries=day_entries[:20],
    )


# --- The member's own tickets --------------------------------------------------------------


def member_disputes(*, user) -> QuerySet[Dispute]:
    return scope_to_member(Dispute.objects.select_related("program"), user).order_by("-created_at", "-pk")


def member_dispute_get(*, user, pk: int) -> Dispute:
    return get_for_member_or_404(Dispute.objects.select_related("program", "member"), user, pk=pk)


def member_entries_for_dispute(*, member: Member, limit: int = 50) -> QuerySet[LedgerEntry]:
    """The member's latest entries, offered when opening a ticket about one of them."""
    return LedgerEntry.objects.filter(account__member=member).order_by("-id")[:limit]


# --- Agent KPIs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketKpis:
    """One agent's tickets over a period. Averages are None when nothing was measured."""

    first_response_seconds: float | None  # average, pauses left out
    resolution_seconds: float | None  # average over tickets they closed
    sla_attained_pct: float | None  # closed within the resolution target, % of those closed
    reopen_rate_pct: float | None  # closed then reopened at least once, % of those closed
    resolved: int  # tickets they closed (resolved or rejected) in the period


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def ticket_kpis_by_agent(*, start: datetime, end: datetime, program_ids=None) -> dict[int, TicketKpis]:
    """Per-agent ticket KPIs for [start, end), keyed by user id, computed in the database (two queries).

    First responses count by who made them and when; closures (resolved or
    rejected) by who closed them and when. A closed ticket reopened since still
    counts for the agent who closed it, and raises their reopen rate.
    """
    tickets = Dispute.objects.all()
    if program_ids is not None:
        tickets = tickets.filter(program_id__in=list(program_ids))
    responses = {
        row["first_response_by"]: row["avg"]
        for row in tickets.filter(
            first_response_at__gte=start, first_response_at__lt=end, first_response_by__isnull=False
        )
        .values("first_response_by")
        .annotate(avg=Avg("first_response_seconds"))
        .order_by()
    }
    closures = {
        row["resolved_by"]: row
        for row in tickets.filter(resolved_at__gte=start, resolved_at__lt=end, resolved_by__isnull=False)
        .values("resolved_by")
        .annotate(
            n=Count("pk"),
            avg=Avg("resolution_seconds"),
            in_sla=Count("pk", filter=Q(resolved_within_sla=True)),
            reopened=Count("pk", filter=Q(reopened_count__gt=0)),
        )
        .order_by()
    }
    result = {}
    for agent_id in responses.keys() | closures.keys():
        closed = closures.get(agent_id, {"n": 0, "avg": None, "in_sla": 0, "reopened": 0})
        first = responses.get(agent_id)
        result[agent_id] = TicketKpis(
            first_response_seconds=float(first) if first is not None else None,
            resolution_seconds=float(closed["avg"]) if closed["avg"] is not None else None,
            sla_attained_pct=_pct(closed["in_sla"], closed["n"]),
            reopen_rate_pct=_pct(closed["reopened"], closed["n"]),
            resolved=closed["n"],
        )
    return result
