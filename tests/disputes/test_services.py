"""The dispute workflow, the SLA clock, assignment, maker-checker adjustments and escalation."""

from datetime import timedelta

import pytest
from django.core import mail

from disputes import services, sla
from disputes.models import AdjustmentRequest, Comment, Dispute, DisputePause, DisputePolicy, Priority
from disputes.services import TRANSITIONS, IllegalTransition, NotAllowed
from loyalty import notifications
from loyalty.models import LedgerEntry, PointsAccount
from tests.disputes.conftest import T0, open_ticket

Status = Dispute.Status
pytestmark = pytest.mark.django_db

H = timedelta(hours=1)


def fresh(obj):
    return type(obj).objects.get(pk=obj.pk)


def balance(member) -> int:
    return PointsAccount.objects.get(member=member).balance


def put_in(ticket, status, user, now=T0):
    """Drive a ticket to `status` by legal moves."""
    if status == Status.OPEN:
        return ticket
    if status in (Status.RESOLVED, Status.REJECTED):
        return services.dispute_close(dispute=ticket, to=status, resolution="Settled.", user=user, now=now)
    return services.dispute_transition(dispute=ticket, to=status, user=user, now=now)


def move(ticket, to, user, now=T0 + H):
    if to in (Status.RESOLVED, Status.REJECTED):
        return services.dispute_close(dispute=ticket, to=to, resolution="Done.", user=user, now=now)
    return services.dispute_transition(dispute=ticket, to=to, user=user, now=now)


# --- Transitions -------------------------------------------------------------------------

ALL_PAIRS = [(a, b) for a in Status.values for b in Status.values]
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if b not in TRANSITIONS[a]]
LEGAL = [(a, b) for a, b in ALL_PAIRS if b in TRANSITIONS[a]]


@pytest.mark.parametrize(("start", "to"), ILLEGAL)
def test_every_illegal_transition_is_refused_and_changes_nothing(ticket_a, agent_a, start, to):
    ticket = put_in(ticket_a, start, agent_a)
    before = fresh(ticket)
    with pytest.raises(IllegalTransition) as refused:
        move(ticket, to, agent_a)
    assert "cannot be moved" in refused.value.message
    after = fresh(ticket)
    assert (after.status, after.updated_at, after.resolution_due) == (
        before.status,
        before.updated_at,
        before.resolution_due,
    )


@pytest.mark.parametrize(("start", "to"), LEGAL)
def test_every_legal_transition_is_accepted(ticket_a, agent_a, start, to):
    ticket = put_in(ticket_a, start, agent_a)
    moved = move(ticket, to, agent_a)
    assert fresh(moved).status == to


def test_the_illegal_set_is_not_empty_and_closed_tickets_only_reopen():
    assert len(ILLEGAL) == 36 - len(LEGAL) and len(ILLEGAL) >= 15
    assert TRANSITIONS[Status.RESOLVED] == {Status.OPEN}


def test_reopening_after_the_window_is_refused(ticket_a, agent_a):
    DisputePolicy.objects.create(program=ticket_a.program, reopen_window_days=7)
    closed = put_in(ticket_a, Status.RESOLVED, agent_a)
    with pytest.raises(IllegalTransition, match="more than 7 days"):
        services.dispute_reopen(dispute=closed, user=agent_a, now=T0 + timedelta(days=7, seconds=1))
    reopened = services.dispute_reopen(dispute=closed, user=agent_a, now=T0 + timedelta(days=7))
    assert (reopened.status, reopened.reopened_count) == (Status.OPEN, 1)


def test_a_member_can_reopen_only_their_own_ticket(ticket_a, agent_a, member_b, member_a):
    closed = put_in(ticket_a, Status.RESOLVED, agent_a)
    with pytest.raises(NotAllowed):
        services.dispute_reopen(dispute=closed, member=member_b, now=T0 + H)
    services.dispute_reopen(dispute=closed, member=member_a, reason="Still missing.", now=T0 + H)
    assert fresh(closed).status == Status.OPEN
    assert closed.comments.filter(by_member=True, body="Still missing.").exists()


# --- SLA clock ---------------------------------------------------------------------------


def test_due_at_adds_the_pauses_after_the_start():
    start = T0
    pauses = [(T0 - 5 * H, T0 - 4 * H), (T0 + 2 * H, T0 + 5 * H), (T0 + 10 * H, T0 + 11 * H)]
    # The pause before the start does not count; the other two add 3 h + 1 h.
    assert sla.due_at(start=start, target=24 * H, pauses=pauses, now=T0 + 20 * H) == T0 + 28 * H


def test_due_at_counts_a_running_pause_up_to_now():
    pauses = [(T0 + 2 * H, T0 + 3 * H), (T0 + 6 * H, None)]
    assert sla.due_at(start=T0, target=8 * H, pauses=pauses, now=T0 + 10 * H) == T0 + 8 * H + H + 4 * H


def test_a_pause_straddling_the_start_counts_only_its_part_after_it():
    assert sla.due_at(start=T0, target=H, pauses=[(T0 - H, T0 + 2 * H)], now=T0) == T0 + 3 * H


def test_working_seconds_leave_out_the_pauses_inside():
    pauses = [(T0 + H, T0 + 2 * H), (T0 + 9 * H, T0 + 12 * H)]  # the second ends after `end`
    assert sla.working_seconds(start=T0, end=T0 + 10 * H, pauses=pauses) == 8 * 3600


def test_awaiting_the_member_pauses_the_clock_and_moves_due_times_by_the_pause(ticket_a, agent_a, member_a):
    due = ticket_a.resolution_due
    first_due = ticket_a.first_response_due
    assert due == T0 + timedelta(hours=120)  # normal priority, default policy
    services.dispute_transition(dispute=ticket_a, to=Status.AWAITING_MEMBER, user=agent_a, now=T0 + H)
    paused = fresh(ticket_a)
    assert paused.paused_at == T0 + H
    services.member_reply(dispute=paused, member=member_a, body="Here is my receipt.", now=T0 + 4 * H)
    resumed = fresh(ticket_a)
    assert resumed.status == Status.IN_PROGRESS and resumed.paused_at is None
    assert resumed.resolution_due == due + 3 * H
    assert resumed.first_response_due == first_due + 3 * H
    assert resumed.paused_seconds == 3 * 3600
    pause = DisputePause.objects.get(dispute=ticket_a)
    assert (pause.started_at, pause.ended_at) == (T0 + H, T0 + 4 * H)
    # The stored due time is what the pure arithmetic gives over the recorded pauses.
    target = sla.targets_for(services.policy_for(ticket_a.program), ticket_a.priority).resolution
    pauses = [(p.started_at, p.ended_at) for p in resumed.pauses.all()]
    assert resumed.resolution_due == sla.due_at(start=T0, target=target, pauses=pauses, now=T0 + 5 * H)


def test_first_response_and_resolution_times_leave_out_pauses(ticket_a, agent_a, member_a):
    services.dispute_transition(dispute=ticket_a, to=Status.AWAITING_MEMBER, user=agent_a, now=T0 + H)
    services.member_reply(dispute=ticket_a, member=member_a, body="Receipt attached.", now=T0 + 3 * H)
    services.comment_add(dispute=ticket_a, user=agent_a, body="Looking.", internal=False, now=T0 + 4 * H)
    closed = services.dispute_close(
        dispute=ticket_a, to=Status.RESOLVED, resolution="Credited.", user=agent_a, now=T0 + 6 * H
    )
    assert closed.first_response_seconds == 2 * 3600  # 4 h minus the 2 h pause
    assert closed.resolution_seconds == 4 * 3600
    assert closed.resolved_within_sla is True


def test_closed_time_does_not_count_after_a_reopen(ticket_a, agent_a):
    due = ticket_a.resolution_due
    put_in(ticket_a, Status.RESOLVED, agent_a, now=T0 + H)
    reopened = services.dispute_reopen(dispute=ticket_a, user=agent_a, now=T0 + 25 * H)
    assert reopened.resolution_due == due + 24 * H


# --- Comments and notifications -------------------------------------------------------------


@pytest.fixture
def sent_notifications():
    sent = []
    handler = notifications.register(lambda **kw: sent.append(kw))
    yield sent
    notifications._handlers.remove(handler)


def test_a_reply_notifies_the_member_and_a_note_does_not(
    ticket_a, agent_a, sent_notifications, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.comment_add(dispute=ticket_a, user=agent_a, body="Internal only.", internal=True)
        reply = services.comment_add(dispute=ticket_a, user=agent_a, body="We're on it.", internal=False)
    assert [n["kind"] for n in sent_notifications] == ["dispute_reply"]
    assert sent_notifications[0]["dedupe_key"] == f"dispute-reply:{reply.pk}"
    assert sent_notifications[0]["context"]["body"] == "We're on it."
    ticket = fresh(ticket_a)
    assert ticket.first_response_by == agent_a and ticket.status == Status.IN_PROGRESS


def test_an_internal_note_does_not_count_as_first_response(ticket_a, agent_a):
    services.comment_add(dispute=ticket_a, user=agent_a, body="Checking the ledger.", internal=True)
    assert fresh(ticket_a).first_response_at is None


def test_an_agent_of_another_program_cannot_act_on_the_ticket(ticket_a, agent_b):
    before = fresh(ticket_a)
    with pytest.raises(NotAllowed):
        services.comment_add(dispute=ticket_a, user=agent_b, body="Hi", internal=False)
    with pytest.raises(NotAllowed):
        services.dispute_transition(dispute=ticket_a, to=Status.IN_PROGRESS, user=agent_b)
    with pytest.raises(NotAllowed):
        services.adjustment_request(dispute=ticket_a, points=5, reason="x", user=agent_b, request_key="k")
    assert services.dispute_take_next(user=agent_b) is None
    after = fresh(ticket_a)
    assert (after.status, after.assignee, after.comments.count()) == (before.status, None, 0)


# --- Assignment ---------------------------------------------------------------------------


def test_take_next_gives_the_most_urgent_unassigned_ticket_of_my_programs(member_a, agent_a, ticket_b):
    low = open_ticket(member_a, priority=Priority.LOW)
    urgent_late = open_ticket(member_a, priority=Priority.URGENT, now=T0 + H)
    urgent_early = open_ticket(member_a, priority=Priority.URGENT, now=T0)
    taken = [services.dispute_take_next(user=agent_a, now=T0 + 2 * H) for _ in range(4)]
    assert [t.pk if t else None for t in taken] == [urgent_early.pk, urgent_late.pk, low.pk, None]
    assert fresh(low).assignee == agent_a and fresh(low).status == Status.IN_PROGRESS
    assert fresh(ticket_b).assignee is None


def test_an_agent_cannot_assign_someone_else_but_a_supervisor_can(ticket_a, agent_a, supervisor):
    with pytest.raises(NotAllowed):
        services.dispute_assign(dispute=ticket_a, assignee=supervisor, user=agent_a)
    services.dispute_assign(dispute=ticket_a, assignee=agent_a, user=supervisor)
    assert fresh(ticket_a).assignee == agent_a


def test_a_ticket_cannot_go_to_someone_off_the_program(ticket_a, agent_b, supervisor):
    with pytest.raises(services.DisputeError, match="does not work on this program"):
        services.dispute_assign(dispute=ticket_a, assignee=agent_b, user=supervisor)


def _second_agent(program, name):
    from conftest import PASSWORD
    from loyalty.roles import Role
    from loyalty.services import staff_user_create

    return staff_user_create(username=name, role=Role.AGENT, password=PASSWORD, programs=[program])


def test_round_robin_assigns_agents_in_turn(program_a, member_a, agent_a):
    DisputePolicy.objects.create(program=program_a, assignment=DisputePolicy.Assignment.ROUND_ROBIN)
    other = _second_agent(program_a, "agent-a2")
    assignees = [open_ticket(member_a, now=T0 + i * H).assignee for i in range(4)]
    assert assignees == [agent_a, other, agent_a, other]


def test_least_busy_assigns_the_agent_with_fewest_open_tickets(program_a, member_a, agent_a):
    DisputePolicy.objects.create(program=program_a, assignment=DisputePolicy.Assignment.LEAST_BUSY)
    other = _second_agent(program_a, "agent-a2")
    first = open_ticket(member_a)
    assert first.assignee == agent_a
    second = open_ticket(member_a)
    assert second.assignee == other
    services.dispute_close(dispute=first, to=Status.RESOLVED, resolution="ok", user=agent_a, now=T0 + H)
    assert open_ticket(member_a).assignee == agent_a  # agent_a has none open now


def test_no_policy_means_no_automatic_assignment_and_default_targets(ticket_a, program_a):
    assert ticket_a.assignee is None
    policy = services.policy_for(program_a)
    assert policy.approval_threshold == program_a.adjustment_approval_threshold
    assert ticket_a.first_response_due == T0 + 24 * H


# --- Adjustments -----------------------------------------------------------------------------


def request(ticket, points, user, key="form-1", **kwargs):
    return services.adjustment_request(
        dispute=ticket, points=points, reason="Missing purchase", user=user, request_key=key, **kwargs
    ).adjustment


def test_an_adjustment_at_the_threshold_is_applied_at_once_with_the_dispute_linked(
    ticket_a, funded_a, agent_a, sent_notifications, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        adjustment = request(ticket_a, 500, agent_a)
    assert adjustment.status == AdjustmentRequest.Status.APPLIED
    assert balance(funded_a) == 1500
    entry = adjustment.entry
    assert (entry.kind, entry.points, entry.subject, entry.actor) == (
        LedgerEntry.Kind.ADJUST,
        500,
        adjustment,
        agent_a,
    )
    assert entry.idempotency_key == f"dispute-adjustment:{adjustment.pk}"
    assert ticket_a.reference in entry.reason
    assert [n["kind"] for n in sent_notifications] == ["dispute_reply"]


def test_a_double_submitted_request_form_creates_one_request(ticket_a, funded_a, agent_a):
    first = services.adjustment_request(
        dispute=ticket_a, points=100, reason="x", user=agent_a, request_key="same"
    )
    again = services.adjustment_request(
        dispute=ticket_a, points=100, reason="x", user=agent_a, request_key="same"
    )
    assert again.replayed and again.adjustment.pk == first.adjustment.pk
    assert balance(funded_a) == 1100
    assert AdjustmentRequest.objects.count() == 1


def test_an_adjustment_above_the_threshold_changes_no_balance_until_approved(
    ticket_a, funded_a, agent_a, supervisor, django_capture_on_commit_callbacks
):
    supervisor.email = "sup@example.com"
    supervisor.save()
    with django_capture_on_commit_callbacks(execute=True):
        adjustment = request(ticket_a, 501, agent_a)
    assert adjustment.status == AdjustmentRequest.Status.PENDING and adjustment.entry is None
    assert balance(funded_a) == 1000
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.ADJUST).exists()
    assert mail.outbox[-1].to == ["sup@example.com"] and "Approval needed" in mail.outbox[-1].subject
    # The ticket cannot be closed under a pending request.
    with pytest.raises(services.DisputeError, match="awaits a supervisor"):
        services.dispute_close(dispute=ticket_a, to=Status.RESOLVED, resolution="x", user=agent_a)
    services.adjustment_approve(adjustment=adjustment, user=supervisor)
    assert balance(funded_a) == 1501


def test_an_agent_cannot_approve(ticket_a, funded_a, agent_a, supervisor):
    adjustment = request(ticket_a, 900, supervisor)
    with pytest.raises(NotAllowed, match="Only a supervisor"):
        services.adjustment_approve(adjustment=adjustment, user=agent_a)
    with pytest.raises(NotAllowed):
        services.adjustment_reject(adjustment=adjustment, user=agent_a, reason="no")
    assert fresh(adjustment).status == AdjustmentRequest.Status.PENDING
    assert balance(funded_a) == 1000


def test_no_one_can_approve_or_reject_their_own_request(ticket_a, funded_a, supervisor, admin_user):
    for requester in (supervisor, admin_user):
        adjustment = request(ticket_a, 900, requester, key=f"own-{requester.pk}")
        with pytest.raises(NotAllowed, match="your own request"):
            services.adjustment_approve(adjustment=adjustment, user=requester)
        with pytest.raises(NotAllowed, match="your own request"):
            services.adjustment_reject(adjustment=adjustment, user=requester, reason="no")
        assert fresh(adjustment).status == AdjustmentRequest.Status.PENDING
    assert balance(funded_a) == 1000


def test_a_supervisor_of_another_program_cannot_approve(ticket_a, funded_a, agent_a, program_b):
    from conftest import PASSWORD
    from loyalty.roles import Role
    from loyalty.services import staff_user_create

    outsider = staff_user_create(
        username="sup-b", role=Role.SUPERVISOR, password=PASSWORD, programs=[program_b]
    )
    adjustment = request(ticket_a, 900, agent_a)
    with pytest.raises(NotAllowed):
        services.adjustment_approve(adjustment=adjustment, user=outsider)
    assert balance(funded_a) == 1000


def test_approving_twice_posts_once(ticket_a, funded_a, agent_a, supervisor, supervisor_2):
    adjustment = request(ticket_a, 900, agent_a)
    first = services.adjustment_approve(adjustment=adjustment, user=supervisor)
    second = services.adjustment_approve(adjustment=adjustment, user=supervisor_2)
    assert not first.replayed and second.replayed
    assert balance(funded_a) == 1900
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.ADJUST).count() == 1
    assert fresh(adjustment).decided_by == supervisor


def test_a_rejection_needs_a_reason_posts_nothing_and_cannot_then_be_approved(
    ticket_a, funded_a, agent_a, supervisor
):
    adjustment = request(ticket_a, -900, agent_a)
    with pytest.raises(services.DisputeError, match="Say why"):
        services.adjustment_reject(adjustment=adjustment, user=supervisor, reason=" ")
    services.adjustment_reject(adjustment=adjustment, user=supervisor, reason="Purchase was returned.")
    rejected = fresh(adjustment)
    assert (rejected.status, rejected.decision_reason) == (
        AdjustmentRequest.Status.REJECTED,
        "Purchase was returned.",
    )
    with pytest.raises(IllegalTransition):
        services.adjustment_approve(adjustment=adjustment, user=supervisor)
    assert balance(funded_a) == 1000
    assert Comment.objects.filter(dispute=ticket_a, visibility="internal", body__contains="rejected").exists()


def test_the_program_policy_sets_the_threshold(ticket_a, funded_a, agent_a, program_a):
    DisputePolicy.objects.create(program=program_a, approval_threshold=50)
    assert request(ticket_a, 51, agent_a).status == AdjustmentRequest.Status.PENDING
    assert request(ticket_a, -50, agent_a, key="f2").status == AdjustmentRequest.Status.APPLIED


# --- Escalation -------------------------------------------------------------------------------


def test_escalation_run_twice_escalates_once(
    member_a, agent_a, supervisor, django_capture_on_commit_callbacks
):
    supervisor.email = "sup@example.com"
    supervisor.save()
    late = open_ticket(member_a, priority=Priority.HIGH)  # first response due in 8 h
    on_time = open_ticket(member_a, priority=Priority.LOW)
    waiting = open_ticket(member_a, priority=Priority.HIGH)
    services.dispute_transition(dispute=waiting, to=Status.AWAITING_MEMBER, user=agent_a, now=T0 + H)
    later = T0 + 9 * H
    with django_capture_on_commit_callbacks(execute=True):
        assert services.escalate_overdue(now=later) == [late.pk]
        assert services.escalate_overdue(now=later + H) == []
    escalated = fresh(late)
    assert (escalated.status, escalated.priority, escalated.escalated_at) == (
        Status.ESCALATED,
        Priority.URGENT,
        later,
    )
    assert fresh(on_time).escalated_at is None and fresh(waiting).escalated_at is None
    assert len(mail.outbox) == 1 and "overdue" in mail.outbox[0].subject
    assert escalated.comments.filter(visibility="internal", body__contains="SLA").count() == 1


def test_closing_tells_the_member_with_the_resolution(
    ticket_a, agent_a, sent_notifications, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.dispute_close(dispute=ticket_a, to=Status.RESOLVED, resolution="Credited 40.", user=agent_a)
    assert [(n["kind"], n["context"]["resolution"]) for n in sent_notifications] == [
        ("dispute_resolved", "Credited 40.")
    ]


def test_a_reply_reaches_the_member_by_email_through_the_real_delivery(
    ticket_a, agent_a, member_a, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.comment_add(dispute=ticket_a, user=agent_a, body="We found your purchase.", internal=False)
    sent = [m for m in mail.outbox if member_a.email in m.to]
    assert len(sent) == 1 and "We found your purchase." in sent[0].body
