"""Dispute screens: the agents' queue and ticket page, the supervisors' approvals, the member's pages.

Staff views check the role, then load the ticket through the staff scope (another
program's ticket is a 404). Member views load the ticket through the member scope.
Services decide; a refusal (ApplicationError) goes back on the page with its status.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from disputes import selectors, services
from disputes.filters import AdjustmentFilter, DisputeFilter
from disputes.forms import (
    AdjustmentRequestForm,
    AssignForm,
    CloseForm,
    CommentForm,
    DecisionForm,
    MemberDisputeForm,
    MemberReplyForm,
    MoveForm,
    ReopenForm,
    StaffDisputeForm,
)
from disputes.models import AdjustmentRequest, Dispute
from disputes.tables import AdjustmentTable, DisputeTable
from loyalty import selectors as loyalty_selectors
from loyalty.access import get_for_staff_or_404, has_role, role_required
from loyalty.errors import ApplicationError
from loyalty.models import LedgerEntry
from loyalty.portal import selectors as portal_selectors
from loyalty.roles import GROUP_NAMES, Role
from loyalty.tables import LedgerEntryTable
from loyalty.views import StaffQueueView, _account, _form_error

Status = Dispute.Status


# --- The queue ---------------------------------------------------------------------------


class DisputeListView(StaffQueueView):
    table_class = DisputeTable
    filterset_class = DisputeFilter
    template_name = "disputes/dispute_list.html"
    export_name = "disputes"

    def get_queryset(self):
        return selectors.dispute_queue(user=self.request.user)


dispute_list = DisputeListView.as_view()


class ApprovalListView(StaffQueueView):
    required_role = Role.SUPERVISOR
    table_class = AdjustmentTable
    filterset_class = AdjustmentFilter
    template_name = "disputes/approval_list.html"
    export_name = "adjustments-awaiting-approval"

    def get_queryset(self):
        return selectors.pending_adjustments(user=self.request.user)


approval_list = ApprovalListView.as_view()


@require_POST
@role_required(Role.AGENT)
def take_next(request):
    dispute = services.dispute_take_next(user=request.user)
    if dispute is None:
        messages.info(request, "No unassigned ticket is waiting in your programs.")
        return redirect("disputes:list")
    messages.success(request, f"{dispute.reference} is yours now.")
    return redirect(dispute)


# --- Opening a ticket for a member (agent) -------------------------------------------------


@require_http_methods(["GET", "POST"])
@role_required(Role.AGENT)
def dispute_create(request, number):
    member = loyalty_selectors.member_get(user=request.user, number=number)
    status = 200
    if request.method == "POST":
        form = StaffDisputeForm(request.POST)
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            try:
                dispute = services.dispute_open(
                    member=member,
                    category=data["category"],
                    subject=data["subject"],
                    description=data["description"],
                    priority=data["priority"],
                    disputed_on=data["disputed_on"],
                    channel=Dispute.Channel.AGENT,
                    created_by=request.user,
                )
            except ApplicationError as error:
                _form_error(form, error)
                status = error.status
            else:
                messages.success(request, f"{dispute.reference} opened for {member.full_name}.")
                return redirect(dispute)
    else:
        form = StaffDisputeForm()
    context = {"member": member, "program": member.program, "form": form}
    return render(request, "disputes/dispute_create.html", context, status=status)


# --- The ticket page ------------------------------------------------------------------------


def _assignable(dispute: Dispute):
    return (
        get_user_model()
        .objects.filter(
            loyalty_programs=dispute.program,
            groups__name__in=[GROUP_NAMES[Role.AGENT], GROUP_NAMES[Role.SUPERVISOR]],
            is_active=True,
        )
        .distinct()
        .order_by("username")
    )


def _ticket_page(request, dispute: Dispute, *, bound: dict | None = None, status: int = 200):
    user = request.user
    account = _account(dispute.member)
    is_supervisor = has_role(user, Role.SUPERVISOR)
    adjustments = selectors.dispute_adjustments(dispute=dispute)
    forms = {
        "comment": CommentForm(prefix="comment"),
        "move": MoveForm(prefix="move"),
        "close": CloseForm(prefix="close"),
        "reopen": ReopenForm(prefix="reopen"),
        "assign": AssignForm(
            prefix="assign", staff=_assignable(dispute), initial={"assignee": dispute.assignee_id}
        ),
        "adjust": AdjustmentRequestForm.fresh(),
    }
    forms.update(bound or {})
    moves = [(value, label) for value, label in forms["move"].fields["status"].choices]
    forms["move"].fields["status"].choices = [
        (value, label) for value, label in moves if value in services.TRANSITIONS[dispute.status]
    ]
    ctx = selectors.member_context(dispute=dispute, account=account)
    context = {
        "dispute": dispute,
        "member": dispute.member,
        "program": dispute.program,
        "account": account,
        "policy": services.policy_for(dispute.program),
        "comments": selectors.dispute_comments(dispute=dispute, include_internal=True),
        "adjustments": adjustments,
        "decidable": {
            a.pk
            for a in adjustments
            if is_supervisor and a.status == AdjustmentRequest.Status.PENDING and a.requested_by_id != user.pk
        },
        "decision_form": bound.get("decision") if bound and "decision" in bound else DecisionForm(),
        "ctx": ctx,
        "recent_table": LedgerEntryTable(
            ctx.overview.recent_entries,
            membership_number=dispute.member.membership_number,
            orderable=False,
            exclude=("occurred_at", "source", "breakdown", "reverses", "pending_points"),
        ),
        "forms": forms,
        "is_supervisor": is_supervisor,
        "tab": "",
    }
    with timezone.override(dispute.program.tz):
        return render(request, "disputes/dispute_detail.html", context, status=status)


@require_GET
@role_required(Role.AGENT)
def dispute_detail(request, pk):
    return _ticket_page(request, selectors.dispute_get(user=request.user, pk=pk))


def _act(request, pk, name: str, form_class, action, *, form_kwargs=None):
    """Validate the named form, call the service, redirect; or the page again with the refusal."""
    dispute = selectors.dispute_get(user=request.user, pk=pk)
    kwargs = {"prefix": name, **(form_kwargs(dispute) if form_kwargs else {})}
    form = form_class(request.POST, **kwargs)
    status = 400
    if form.is_valid():
        try:
            text = action(dispute, form.cleaned_data)
        except ApplicationError as error:
            _form_error(form, error)
            messages.error(request, error.message)
            status = error.status
        else:
            if text:
                messages.success(request, text)
            return redirect("disputes:detail", pk=dispute.pk)
    return _ticket_page(request, dispute, bound={name: form}, status=status)


@require_POST
@role_required(Role.AGENT)
def dispute_comment(request, pk):
    def action(dispute, data):
        services.comment_add(
            dispute=dispute,
            user=request.user,
            body=data["body"],
            internal=data["internal"],
            await_member=data["await_member"],
        )
        return "Internal note added." if data["internal"] else "Reply sent to the member."

    return _act(request, pk, "comment", CommentForm, action)


@require_POST
@role_required(Role.AGENT)
def dispute_move(request, pk):
    def action(dispute, data):
        moved = services.dispute_transition(dispute=dispute, to=data["status"], user=request.user)
        return f"{moved.reference} is now {moved.get_status_display().lower()}."

    return _act(request, pk, "move", MoveForm, action)


@require_POST
@role_required(Role.AGENT)
def dispute_close_view(request, pk):
    def action(dispute, data):
        closed = services.dispute_close(
            dispute=dispute, to=data["outcome"], resolution=data["resolution"], user=request.user
        )
        return f"{closed.reference} {closed.get_status_display().lower()}; the member has your message."

    return _act(request, pk, "close", CloseForm, action)


@require_POST
@role_required(Role.AGENT)
def dispute_reopen_view(request, pk):
    def action(dispute, data):
        reopened = services.dispute_reopen(dispute=dispute, user=request.user, reason=data["reason"])
        return f"{reopened.reference} reopened."

    return _act(request, pk, "reopen", ReopenForm, action)


@require_POST
@role_required(Role.AGENT)
def dispute_assign_view(request, pk):
    def action(dispute, data):
        assigned = services.dispute_assign(dispute=dispute, assignee=data["assignee"], user=request.user)
        who = assigned.assignee.get_username() if assigned.assignee else "nobody"
        return f"{assigned.reference} assigned to {who}."

    return _act(request, pk, "assign", AssignForm, action, form_kwargs=lambda d: {"staff": _assignable(d)})


@require_POST
@role_required(Role.AGENT)
def dispute_adjust(request, pk):
    dispute = selectors.dispute_get(user=request.user, pk=pk)
    form = AdjustmentRequestForm(request.POST)
    status = 400
    if form.is_valid():
        data = form.cleaned_data
        try:
            result = services.adjustment_request(
                dispute=dispute,
                points=data["points"],
                reason=data["reason"],
                user=request.user,
                request_key=str(data["request_key"]),
            )
        except ApplicationError as error:
            _form_error(form, error)
            messages.error(request, error.message)
            status = error.status
        else:
            adjustment = result.adjustment
            if result.replayed:
                messages.info(request, "This adjustment was already requested; nothing changed.")
            elif adjustment.status == AdjustmentRequest.Status.APPLIED:
                messages.success(request, f"{adjustment.points:+,d} points applied; the member was told.")
            else:
                messages.success(
                    request,
                    f"{adjustment.points:+,d} points is above the threshold: a supervisor must approve it.",
                )
            return redirect("disputes:detail", pk=dispute.pk)
    return _ticket_page(request, dispute, bound={"adjust": form}, status=status)


@require_POST
@role_required(Role.SUPERVISOR)
def adjustment_decide(request, pk, decision):
    if decision not in ("approve", "reject"):
        raise Http404("No such decision.")
    adjustment = get_for_staff_or_404(
        AdjustmentRequest.objects.select_related("dispute"), request.user, pk=pk
    )
    form = DecisionForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            if decision == "approve":
                result = services.adjustment_approve(adjustment=adjustment, user=request.user)
            else:
                result = services.adjustment_reject(
                    adjustment=adjustment, user=request.user, reason=form.cleaned_data["reason"]
                )
        except ApplicationError as error:
            _form_error(form, error)
            messages.error(request, error.message)
            status = error.status
        else:
            verb = "approved and applied" if decision == "approve" else "rejected"
            if result.replayed:
                messages.info(request, f"This adjustment was already {verb}; nothing changed.")
            else:
                messages.success(request, f"Adjustment of {adjustment.points:+,d} points {verb}.")
            return redirect("disputes:detail", pk=adjustment.dispute_id)
    dispute = selectors.dispute_get(user=request.user, pk=adjustment.dispute_id)
    return _ticket_page(request, dispute, bound={"decision": form}, status=status)


@require_GET
@role_required(Role.AGENT)
def dispute_history(request, pk):
    dispute = selectors.dispute_get(user=request.user, pk=pk)
    history, more = selectors.dispute_history(dispute=dispute)
    context = {"dispute": dispute, "program": dispute.program, "history": history, "more_history": more}
    with timezone.override(dispute.program.tz):
        return render(request, "disputes/dispute_history.html", context)


# --- The member's pages ------------------------------------------------------------------------


def _member(request):
    member = portal_selectors.portal_member(user=request.user)
    return member, {"member": member, "program": member.program}


@require_GET
@role_required(Role.MEMBER)
def my_disputes(request):
    member, context = _member(request)
    context["disputes"] = selectors.member_disputes(user=request.user)
    with timezone.override(member.program.tz):
        return render(request, "disputes/my_list.html", context)


@require_http_methods(["GET", "POST"])
@role_required(Role.MEMBER)
def my_dispute_create(request):
    member, context = _member(request)
    entries = LedgerEntry.objects.filter(
        pk__in=selectors.member_entries_for_dispute(member=member).values("pk")
    ).order_by("-id")
    status = 200
    if request.method == "POST":
        form = MemberDisputeForm(request.POST, entries=entries)
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            try:
                dispute = services.dispute_open(
                    member=member,
                    category=data["category"],
                    subject=data["subject"],
                    description=data["description"],
                    related_entry=data["related_entry"],
                    channel=Dispute.Channel.PORTAL,
                    created_by=request.user,
                )
            except ApplicationError as error:
                _form_error(form, error)
                status = error.status
            else:
                messages.success(request, f"Thank you. Your request {dispute.reference} is with our team.")
                return redirect("disputes:my_detail", pk=dispute.pk)
    else:
        form = MemberDisputeForm(entries=entries)
    context["form"] = form
    with timezone.override(member.program.tz):
        return render(request, "disputes/my_create.html", context, status=status)


def _my_page(request, dispute, *, reply_form=None, reopen_form=None, status=200):
    _member_row, context = _member(request)
    window = services.policy_for(dispute.program).reopen_window_days
    can_reopen = dispute.is_closed and timezone.now() <= dispute.resolved_at + timedelta(days=window)
    context.update(
        dispute=dispute,
        replies=selectors.dispute_comments(dispute=dispute, include_internal=False),
        reply_form=reply_form or MemberReplyForm(),
        reopen_form=reopen_form or ReopenForm(),
        can_reopen=can_reopen,
    )
    with timezone.override(dispute.program.tz):
        return render(request, "disputes/my_detail.html", context, status=status)


@require_GET
@role_required(Role.MEMBER)
def my_dispute_detail(request, pk):
    return _my_page(request, selectors.member_dispute_get(user=request.user, pk=pk))


@require_POST
@role_required(Role.MEMBER)
def my_dispute_reply(request, pk):
    dispute = selectors.member_dispute_get(user=request.user, pk=pk)
    form = MemberReplyForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            services.member_reply(dispute=dispute, member=dispute.member, body=form.cleaned_data["body"])
        except ApplicationError as error:
            _form_error(form, error)
            status = error.status
        else:
            messages.success(request, "Your message was sent.")
            return redirect("disputes:my_detail", pk=dispute.pk)
    return _my_page(request, dispute, reply_form=form, status=status)


@require_POST
@role_required(Role.MEMBER)
def my_dispute_reopen(request, pk):
    dispute = selectors.member_dispute_get(user=request.user, pk=pk)
    form = ReopenForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            services.dispute_reopen(
                dispute=dispute, member=dispute.member, reason=form.cleaned_data["reason"]
            )
        except ApplicationError as error:
            _form_error(form, error)
            status = error.status
        else:
            messages.success(request, "Your request is open again; our team will come back to you.")
            return redirect("disputes:my_detail", pk=dispute.pk)
    return _my_page(request, dispute, reopen_form=form, status=status)
