"""Dispute writes: opening, the workflow, comments, assignment, adjustments, escalation.

Legal moves (anything else raises `IllegalTransition`):

    open            -> in_progress | awaiting_member | escalated | resolved | rejected
    in_progress     -> awaiting_member | escalated | resolved | rejected
    awaiting_member -> in_progress | escalated | resolved | rejected
    escalated       -> in_progress | awaiting_member | resolved | rejected
    resolved        -> open   (a reopen, within the program's reopen window)
    rejected        -> open   (likewise)

The SLA clock stops while a ticket is awaiting the member and while it is closed:
leaving that state pushes the stored due times back by the time spent in it, so
the stored due times always equal `sla.due_at` over the pauses. Every change locks
the ticket row first, so two people acting at once act one after the other.

Point corrections go through `loyalty.ledger.adjust` with the adjustment request as
subject and a key derived from its id, so approving twice posts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, OuterRef, Q, Subquery
from django.urls import reverse
from django.utils import timezone

from disputes import sla
from disputes.models import AdjustmentRequest, Comment, Dispute, DisputePause, DisputePolicy, Priority
from loyalty import ledger, notifications
from loyalty.access import has_role, staff_programs
from loyalty.errors import ApplicationError
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, Member, PointsAccount, Program, Redemption
from loyalty.roles import GROUP_NAMES, Role

Status = Dispute.Status
CLOSED = (Status.RESOLVED, Status.REJECTED)
OPEN_STATUSES = tuple(s for s in Status.values if s not in CLOSED)

TRANSITIONS: dict[str, frozenset[str]] = {
    Status.OPEN: frozenset(
        {Status.IN_PROGRESS, Status.AWAITING_MEMBER, Status.ESCALATED, Status.RESOLVED, Status.REJECTED}
    ),
    Status.IN_PROGRESS: frozenset(
        {Status.AWAITING_MEMBER, Status.ESCALATED, Status.RESOLVED, Status.REJECTED}
    ),
    Status.AWAITING_MEMBER: frozenset(
        {Status.IN_PROGRESS, Status.ESCALATED, Status.RESOLVED, Status.REJECTED}
    ),
    Status.ESCALATED: frozenset(
        {Status.IN_PROGRESS, Status.AWAITING_MEMBER, Status.RESOLVED, Status.REJECTED}
    ),
    Status.RESOLVED: frozenset({Status.OPEN}),
    Status.REJECTED: frozenset({Status.OPEN}),
}


# --- Errors ----------------------------------------------------------------------


class DisputeError(ApplicationError):
    code = "dispute_error"


class IllegalTransition(DisputeError):
    code = "illegal_transition"
    status = 409


class NotAllowed(DisputeError):
    code = "not_allowed"
    status = 403


class AdjustmentPending(DisputeError):
    code = "adjustment_pending"
    status = 409


@dataclass(frozen=True)
class AdjustmentResult:
    """`replayed`: the request had been decided before; nothing was written."""

    adjustment: AdjustmentRequest
    replayed: bool = False


# --- Policy ----------------------------------------------------------------------


def policy_for(program: Program) -> DisputePolicy:
    """The program's dispute policy; without a row, the model defaults and the program's own threshold."""
    try:
        return program.dispute_policy
    except DisputePolicy.DoesNotExist:
        return DisputePolicy(program=program, approval_threshold=program.adjustment_approval_threshold)


def needs_approval(*, program: Program, points: int) -> bool:
    return abs(points) > policy_for(program).approval_threshold


# --- Helpers ---------------------------------------------------------------------


def _lock(dispute: Dispute) -> Dispute:
    # Only the ticket row: locking the joined program row too would serialise a whole program's tickets.
    return (
        Dispute.objects.select_for_update(of=("self",)).select_related("program", "member").get(pk=dispute.pk)
    )


def _save(dispute: Dispute, user, now: datetime) -> None:
    dispute.updated_at = now
    if user is not None:
        dispute._history_user = user
    dispute.save()


def _elapsed(dispute: Dispute, now: datetime) -> int:
    """Clock seconds since opening with every pause (finished or running) left out."""
    paused = dispute.paused_seconds + ((now - dispute.paused_at).total_seconds() if dispute.paused_at else 0)
    return max(int((now - dispute.created_at).total_seconds() - paused), 0)


def _stop_clock(dispute: Dispute, now: datetime) -> None:
    dispute.paused_at = now
    DisputePause.objects.create(dispute=dispute, started_at=now)


def _restart_clock(dispute: Dispute, now: datetime, *, since: datetime) -> None:
    """The clock runs again: push the due times back by the time it stood still."""
    stood = now - since
    dispute.paused_seconds += int(stood.total_seconds())
    dispute.resolution_due += stood
    if dispute.first_response_at is None:
        dispute.first_response_due += stood


def _end_pause(dispute: Dispute, now: datetime) -> None:
    if dispute.paused_at is None:
        return
    DisputePause.objects.filter(dispute=dispute, ended_at__isnull=True).update(ended_at=now)
    _restart_clock(dispute, now, since=dispute.paused_at)
    dispute.paused_at = None


def _is_program_staff(user, program: Program) -> bool:
    return staff_programs(user).filter(pk=program.pk).exists()


def _require_staff(user, program: Program) -> None:
    if not has_role(user, Role.AGENT) or not _is_program_staff(user, program):
        raise NotAllowed("You do not work on this program.")


def supervisors_of(program: Program):
    return (
        get_user_model()
        .objects.filter(loyalty_programs=program, groups__name=GROUP_NAMES[Role.SUPERVISOR], is_active=True)
        .distinct()
        .order_by("pk")
    )


def _email_supervisors(dispute: Dispute, *, subject: str, body: str) -> None:
    recipients = [u.email for u in supervisors_of(dispute.program) if u.email]
    if not recipients:
        return
    url = reverse("disputes:detail", kwargs={"pk": dispute.pk})
    message = f"{body}\n\nTicket {dispute.reference} ({dispute.program}): {url}"
    transaction.on_commit(lambda: send_mail(subject, message, None, recipients, fail_silently=True))


def _add_comment(
    dispute: Dispute, *, body: str, visibility: str, author=None, by_member=False, now, kind="dispute_reply"
) -> Comment:
    """Save a comment; a staff reply also notifies the member (`dispute_resolved` for the closing one)."""
    comment = Comment(
        dispute=dispute, visibility=visibility, author=author, by_member=by_member, body=body, created_at=now
    )
    if author is not None:
        comment._history_user = author
    comment.save()
    if visibility == Comment.Visibility.REPLY and not by_member:
        notifications.notify(
            member=dispute.member,
            kind=kind,
            context={
                "dispute_id": dispute.pk,
                "reference": dispute.reference,
                "subject": dispute.subject,
                "status": dispute.get_status_display(),
                "body": body,
                "message": body,
                "resolution": dispute.resolution,
            },
            dedupe_key=f"dispute-reply:{comment.pk}",
        )
    return comment


def _record_first_response(dispute: Dispute, user, now: datetime) -> None:
    if dispute.first_response_at is None:
        dispute.first_response_at = now
        dispute.first_response_by = user
        dispute.first_response_seconds = _elapsed(dispute, now)


# --- Opening ---------------------------------------------------------------------


def dispute_open(
    *,
    member: Member,
    category: str,
    subject: str,
    description: str,
    related_entry: LedgerEntry | None = None,
    related_redemption: Redemption | None = None,
    disputed_on: date | None = None,
    priority: int = Priority.NORMAL,
    channel: str = Dispute.Channel.PORTAL,
    created_by=None,
    now: datetime | None = None,
) -> Dispute:
    """Open a ticket for a member, with its SLA due times, assigned automatically if the program says so."""
    now = now or timezone.now()
    if category not in Dispute.Category.values:
        raise DisputeError("Choose a category.", field="category")
    if not description.strip():
        raise DisputeError("Say what went wrong.", field="description")
    if related_entry is not None and related_entry.account.member_id != member.pk:
        raise DisputeError("That ledger entry is not on this member's account.", field="related_entry")
    if related_redemption is not None and related_redemption.member_id != member.pk:
        raise DisputeError("That redemption is not this member's.", field="related_redemption")
    if disputed_on is None and related_entry is not None:
        disputed_on = timezone.localtime(related_entry.occurred_at, member.program.tz).date()
    program = member.program
    targets = sla.targets_for(policy_for(program), priority)
    with transaction.atomic():
        dispute = Dispute(
            program=program,
            member=member,
            category=category,
            subject=(subject.strip() or Dispute.Category(category).label)[:120],
            description=description.strip(),
            related_entry=related_entry,
            related_redemption=related_redemption,
            disputed_on=disputed_on,
            priority=priority,
            channel=channel,
            created_by=created_by,
            created_at=now,
            updated_at=now,
            first_response_due=now + targets.first_response,
            resolution_due=now + targets.resolution,
        )
        if created_by is not None:
            dispute._history_user = created_by
        dispute.save()
        assignee = auto_assignee(program=program)
        if assignee is not None:
            dispute.assignee, dispute.assigned_at = assignee, now
            dispute.save(update_fields=["assignee", "assigned_at"])
    return dispute


def _program_agents(program: Program):
    return get_user_model().objects.filter(
        loyalty_programs=program, groups__name=GROUP_NAMES[Role.AGENT], is_active=True
    )


def auto_assignee(*, program: Program):
    """The agent a new ticket goes to under the program's policy, or None (one query)."""
    mode = policy_for(program).assignment
    if mode == DisputePolicy.Assignment.NONE:
        return None
    agents = _program_agents(program)
    mine = Dispute.objects.filter(program=program, assignee=OuterRef("pk"))
    if mode == DisputePolicy.Assignment.ROUND_ROBIN:
        # The agent whose last assignment in this program is the oldest (never assigned first).
        last = mine.exclude(assigned_at=None).order_by("-assigned_at").values("assigned_at")[:1]
        agents = agents.order_by(Subquery(last).asc(nulls_first=True), "pk")
    else:
        busy = mine.filter(status__in=OPEN_STATUSES).values("assignee").annotate(n=Count("pk")).values("n")
        agents = agents.order_by(Subquery(busy).asc(nulls_first=True), "pk")
    return agents.first()


# --- Workflow --------------------------------------------------------------------


def _check_move(dispute: Dispute, to: str) -> None:
    if to not in TRANSITIONS.get(dispute.status, frozenset()):
        raise IllegalTransition(
            f"A ticket that is {dispute.get_status_display().lower()} cannot be moved to "
            f"{Status(to).label.lower()}.",
            field="status",
        )


def dispute_transition(*, dispute: Dispute, to: str, user, now: datetime | None = None) -> Dispute:
    """Move a ticket to in progress, awaiting member or escalated (closing and reopening have their own)."""
    now = now or timezone.now()
    if to in CLOSED:
        raise DisputeError("Resolve or reject a ticket with a resolution message.", field="status")
    if to == Status.OPEN:
        return dispute_reopen(dispute=dispute, user=user, now=now)
    with transaction.atomic():
        dispute = _lock(dispute)
        _require_staff(user, dispute.program)
        _check_move(dispute, to)
        _end_pause(dispute, now)
        if to == Status.AWAITING_MEMBER:
            _stop_clock(dispute, now)
        dispute.status = to
        _save(dispute, user, now)
        if to == Status.ESCALATED:
            _add_comment(
                dispute,
                body=f"Escalated by {user.get_username()}.",
                visibility=Comment.Visibility.INTERNAL,
                author=user,
                now=now,
            )
            _email_supervisors(
                dispute,
                subject=f"Dispute {dispute.reference} escalated",
                body=f"{user.get_username()} escalated this ticket.",
            )
    return dispute


def dispute_close(
    *, dispute: Dispute, to: str, resolution: str, user, now: datetime | None = None
) -> Dispute:
    """Resolve or reject with a message the member reads. Refused while an adjustment awaits approval."""
    now = now or timezone.now()
    if to not in CLOSED:
        raise DisputeError("Close a ticket as resolved or rejected.", field="status")
    if not resolution.strip():
        raise DisputeError("Tell the member how this was settled.", field="resolution")
    with transaction.atomic():
        dispute = _lock(dispute)
        _require_staff(user, dispute.program)
        _check_move(dispute, to)
        if dispute.adjustments.filter(status=AdjustmentRequest.Status.PENDING).exists():
            raise AdjustmentPending(
                "An adjustment on this ticket awaits a supervisor's approval; close it after the decision."
            )
        _end_pause(dispute, now)
        _record_first_response(dispute, user, now)
        dispute.status = to
        dispute.resolution = resolution.strip()
        dispute.resolved_at, dispute.resolved_by = now, user
        dispute.resolution_seconds = _elapsed(dispute, now)
        dispute.resolved_within_sla = now <= dispute.resolution_due
        _save(dispute, user, now)
        _add_comment(
            dispute,
            body=dispute.resolution,
            visibility=Comment.Visibility.REPLY,
            author=user,
            now=now,
            kind="dispute_resolved",
        )
    return dispute


def dispute_reopen(
    *,
    dispute: Dispute,
    user=None,
    member: Member | None = None,
    reason: str = "",
    now: datetime | None = None,
) -> Dispute:
    """Open a closed ticket again within the reopen window, by staff (`user`) or by its member."""
    now = now or timezone.now()
    with transaction.atomic():
        dispute = _lock(dispute)
        if member is not None:
            if dispute.member_id != member.pk:
                raise NotAllowed("This is not your ticket.")
        else:
            _require_staff(user, dispute.program)
        _check_move(dispute, Status.OPEN)
        window = timedelta(days=policy_for(dispute.program).reopen_window_days)
        if now > dispute.resolved_at + window:
            raise IllegalTransition(
                f"This ticket was closed more than {window.days} days ago and can no longer be reopened; "
                "open a new one.",
                field="status",
            )
        # Closed time does not count against the SLA: the clock resumes where it stopped.
        _restart_clock(dispute, now, since=dispute.resolved_at)
        dispute.status = Status.OPEN
        dispute.reopened_count += 1
        author = member.user if member is not None else user
        _save(dispute, author, now)
        if reason.strip():
            _add_comment(
                dispute,
                body=reason.strip(),
                visibility=Comment.Visibility.REPLY if member is not None else Comment.Visibility.INTERNAL,
                author=author,
                by_member=member is not None,
                now=now,
            )
    return dispute


def dispute_assign(*, dispute: Dispute, assignee, user, now: datetime | None = None) -> Dispute:
    """Give a ticket to someone on the program. Agents may only take tickets themselves."""
    now = now or timezone.now()
    with transaction.atomic():
        dispute = _lock(dispute)
        _require_staff(user, dispute.program)
        if assignee is not None and assignee.pk != user.pk and not has_role(user, Role.SUPERVISOR):
            raise NotAllowed("Only a supervisor can assign a ticket to someone else.", field="assignee")
        if assignee is not None and not (
            has_role(assignee, Role.AGENT) and _is_program_staff(assignee, dispute.program)
        ):
            raise DisputeError(f"{assignee.get_username()} does not work on this program.", field="assignee")
        if dispute.is_closed:
            raise IllegalTransition("A closed ticket cannot be assigned.", field="assignee")
        dispute.assignee = assignee
        dispute.assigned_at = now if assignee is not None else None
        _save(dispute, user, now)
    return dispute


def dispute_take_next(*, user, now: datetime | None = None) -> Dispute | None:
    """Assign the caller the most urgent unassigned ticket of their programs; None when there is none.

    SKIP LOCKED makes two agents taking at once get two different tickets on PostgreSQL:
    the second skips the row the first has locked instead of waiting for it.
    """
    now = now or timezone.now()
    if not has_role(user, Role.AGENT):
        raise NotAllowed("Only staff can take tickets.")
    with transaction.atomic():
        dispute = (
            Dispute.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                program__in=staff_programs(user).values("pk"), assignee__isnull=True, paused_at__isnull=True
            )
            .exclude(status__in=CLOSED)
            .order_by("-priority", "resolution_due", "pk")
            .first()
        )
        if dispute is None:
            return None
        dispute.assignee, dispute.assigned_at = user, now
        if dispute.status == Status.OPEN:
            dispute.status = Status.IN_PROGRESS
        _save(dispute, user, now)
    return dispute


# --- Comments --------------------------------------------------------------------


def comment_add(
    *,
    dispute: Dispute,
    user,
    body: str,
    internal: bool,
    await_member: bool = False,
    now: datetime | None = None,
) -> Comment:
    """A staff note or reply. The first reply stops the first-response clock; a reply may await the member."""
    now = now or timezone.now()
    if not body.strip():
        raise DisputeError("Write something first.", field="body")
    if internal and await_member:
        raise DisputeError("Only a reply to the member can wait for their answer.", field="await_member")
    with transaction.atomic():
        dispute = _lock(dispute)
        _require_staff(user, dispute.program)
        if dispute.is_closed and not internal:
            raise IllegalTransition("This ticket is closed; reopen it to reply.", field="body")
        if not internal:
            _record_first_response(dispute, user, now)
        if await_member and dispute.status != Status.AWAITING_MEMBER:
            _check_move(dispute, Status.AWAITING_MEMBER)
            _stop_clock(dispute, now)
            dispute.status = Status.AWAITING_MEMBER
        elif dispute.status == Status.OPEN and not internal:
            dispute.status = Status.IN_PROGRESS
        _save(dispute, user, now)
        visibility = Comment.Visibility.INTERNAL if internal else Comment.Visibility.REPLY
        return _add_comment(dispute, body=body.strip(), visibility=visibility, author=user, now=now)


def member_reply(*, dispute: Dispute, member: Member, body: str, now: datetime | None = None) -> Comment:
    """The member answers. A ticket waiting on them goes back to work and its clock restarts."""
    now = now or timezone.now()
    if not body.strip():
        raise DisputeError("Write something first.", field="body")
    with transaction.atomic():
        dispute = _lock(dispute)
        if dispute.member_id != member.pk:
            raise NotAllowed("This is not your ticket.")
        if dispute.is_closed:
            raise IllegalTransition("This ticket is closed; reopen it to add something.", field="body")
        if dispute.status == Status.AWAITING_MEMBER:
            _end_pause(dispute, now)
            dispute.status = Status.IN_PROGRESS
            _save(dispute, member.user, now)
        return _add_comment(
            dispute,
            body=body.strip(),
            visibility=Comment.Visibility.REPLY,
            author=member.user,
            by_member=True,
            now=now,
        )


# --- Adjustments (maker-checker) -------------------------------------------------


def _account(member: Member) -> PointsAccount:
    try:
        return member.account
    except PointsAccount.DoesNotExist:
        return ledger.open_account(member=member)


def _apply(adjustment: AdjustmentRequest, dispute: Dispute, user, now: datetime) -> None:
    posting = ledger.adjust(
        account=_account(dispute.member),
        points=adjustment.points,
        reason=f"Dispute {dispute.reference}: {adjustment.reason}"[:500],
        actor=Actor.of_user(user),
        idempotency_key=adjustment.idempotency_key,
        source=LedgerEntry.Source.AGENT,
        subject=adjustment,
        now=now,
    )
    adjustment.entry = posting.entry
    adjustment.status = AdjustmentRequest.Status.APPLIED
    word = "added to" if adjustment.points > 0 else "removed from"
    _add_comment(
        dispute,
        body=f"{abs(adjustment.points):,d} points have been {word} your balance "
        f"({adjustment.reason}). Your balance is now {posting.balance:,d} points.",
        visibility=Comment.Visibility.REPLY,
        author=user,
        now=now,
    )


def adjustment_request(
    *, dispute: Dispute, points: int, reason: str, user, request_key: str, now: datetime | None = None
) -> AdjustmentResult:
    """Ask for a correction. At or under the threshold it is applied at once; above it waits for approval.

    The same `request_key` (the form's one-time token) returns the first request unchanged.
    """
    now = now or timezone.now()
    if not isinstance(points, int) or points == 0:
        raise DisputeError("An adjustment must add or remove at least one point.", field="points")
    if not reason.strip():
        raise DisputeError("Give the reason the member and the audit will read.", field="reason")
    if not request_key:
        raise DisputeError("The form expired; reload it.", field="request_key")
    existing = AdjustmentRequest.objects.filter(dispute=dispute, request_key=request_key).first()
    if existing is not None:
        return AdjustmentResult(existing, replayed=True)
    try:
        with transaction.atomic():
            dispute = _lock(dispute)
            _require_staff(user, dispute.program)
            if dispute.is_closed:
                raise IllegalTransition("This ticket is closed; reopen it to correct points.", field="points")
            adjustment = AdjustmentRequest(
                dispute=dispute,
                program=dispute.program,
                points=points,
                reason=reason.strip()[:450],
                requested_by=user,
                requested_at=now,
                request_key=request_key,
            )
            adjustment._history_user = user
            adjustment.save()
            if needs_approval(program=dispute.program, points=points):
                _add_comment(
                    dispute,
                    body=f"Adjustment of {points:+,d} points requested; awaiting a supervisor's approval.",
                    visibility=Comment.Visibility.INTERNAL,
                    author=user,
                    now=now,
                )
                _email_supervisors(
                    dispute,
                    subject=f"Approval needed: {points:+,d} points on {dispute.reference}",
                    body=f"{user.get_username()} asks for {points:+,d} points: {adjustment.reason}",
                )
            else:
                _apply(adjustment, dispute, user, now)
                adjustment.decided_at = now
                adjustment.save()
            _save(dispute, user, now)
    except IntegrityError:
        # A double submit raced us to the same key: the other one stands.
        existing = AdjustmentRequest.objects.filter(dispute=dispute, request_key=request_key).first()
        if existing is None:
            raise
        return AdjustmentResult(existing, replayed=True)
    return AdjustmentResult(adjustment)


def _decide(adjustment: AdjustmentRequest, user) -> tuple[AdjustmentRequest, bool]:
    """Lock the request and check the decider; True when it is already decided."""
    locked = (
        AdjustmentRequest.objects.select_for_update(of=("self",))
        .select_related("dispute__program", "dispute__member")
        .get(pk=adjustment.pk)
    )
    dispute = locked.dispute
    if not has_role(user, Role.SUPERVISOR) or not _is_program_staff(user, dispute.program):
        raise NotAllowed("Only a supervisor of this program can decide on an adjustment.")
    if locked.requested_by_id == user.pk:
        raise NotAllowed("You cannot decide on your own request; another supervisor must.")
    return locked, locked.status != AdjustmentRequest.Status.PENDING


def adjustment_approve(
    *, adjustment: AdjustmentRequest, user, now: datetime | None = None
) -> AdjustmentResult:
    """A supervisor other than the requester approves: the points are posted once, however often this runs."""
    now = now or timezone.now()
    with transaction.atomic():
        locked, decided = _decide(adjustment, user)
        if decided:
            if locked.status == AdjustmentRequest.Status.APPLIED:
                return AdjustmentResult(locked, replayed=True)
            raise IllegalTransition("This adjustment was rejected; it cannot be approved now.")
        dispute = _lock(locked.dispute)
        _apply(locked, dispute, user, now)
        locked.decided_by, locked.decided_at = user, now
        locked._history_user = user
        locked.save()
        _save(dispute, user, now)
    return AdjustmentResult(locked)


def adjustment_reject(
    *, adjustment: AdjustmentRequest, user, reason: str, now: datetime | None = None
) -> AdjustmentResult:
    """A supervisor other than the requester refuses, with the reason the agent reads."""
    now = now or timezone.now()
    if not reason.strip():
        raise DisputeError("Say why, for the agent and the audit.", field="reason")
    with transaction.atomic():
        locked, decided = _decide(adjustment, user)
        if decided:
            if locked.status == AdjustmentRequest.Status.REJECTED:
                return AdjustmentResult(locked, replayed=True)
            raise IllegalTransition("This adjustment was already applied; post a new correction instead.")
        locked.status = AdjustmentRequest.Status.REJECTED
        locked.decided_by, locked.decided_at = user, now
        locked.decision_reason = reason.strip()[:500]
        locked._history_user = user
        locked.save()
        _add_comment(
            locked.dispute,
            body=f"Adjustment of {locked.points:+,d} points rejected by {user.get_username()}: "
            f"{locked.decision_reason}",
            visibility=Comment.Visibility.INTERNAL,
            author=user,
            now=now,
        )
    return AdjustmentResult(locked)


# --- Escalation ------------------------------------------------------------------


def _overdue(now: datetime) -> Q:
    return Q(paused_at__isnull=True) & (
        Q(resolution_due__lt=now) | Q(first_response_at__isnull=True, first_response_due__lt=now)
    )


def escalate_overdue(*, now: datetime | None = None, program: Program | None = None) -> list[int]:
    """Escalate every overdue ticket not escalated before: once each, however often this runs.

    Priority goes up a step, the status becomes escalated, and the program's
    supervisors get an email. Tickets waiting on the member are not overdue.
    """
    now = now or timezone.now()
    candidates = Dispute.objects.filter(_overdue(now), escalated_at__isnull=True).exclude(status__in=CLOSED)
    if program is not None:
        candidates = candidates.filter(program=program)
    escalated = []
    for pk in candidates.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            # Re-check under the lock: a concurrent run or an agent may have got there first.
            dispute = (
                Dispute.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("program", "member")
                .filter(_overdue(now), pk=pk, escalated_at__isnull=True)
                .exclude(status__in=CLOSED)
                .first()
            )
            if dispute is None:
                continue
            dispute.escalated_at = now
            dispute.priority = min(dispute.priority + 1, Priority.URGENT)
            dispute.status = Status.ESCALATED
            _save(dispute, None, now)
            _add_comment(
                dispute,
                body="Escalated automatically: the SLA target was missed.",
                visibility=Comment.Visibility.INTERNAL,
                now=now,
            )
            _email_supervisors(
                dispute,
                subject=f"Dispute {dispute.reference} is overdue",
                body=f"The SLA target was missed; priority is now {dispute.get_priority_display().lower()}.",
            )
            escalated.append(dispute.pk)
    return escalated
