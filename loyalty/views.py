"""Agent screens: thin views over loyalty selectors and the ledger.

Every view checks the role first (anonymous users go to the login page, other
roles get a 403), then loads the member through the staff scope (a member of
another program is a 404). Times are shown in the member's program time zone.
"""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin
from django_tables2.export import ExportMixin

from loyalty import ledger, redemptions, selectors
from loyalty.access import RoleRequiredMixin, has_role, role_required
from loyalty.earning import activity_preview
from loyalty.errors import ApplicationError
from loyalty.filters import LedgerEntryFilter, MemberFilter, RedemptionFilter, ShortfallFilter
from loyalty.forms import (
    AdjustmentForm,
    BalanceOnDateForm,
    PreviewForm,
    RedeemForm,
    RedemptionApproveForm,
    RedemptionFulfilForm,
    RedemptionReasonForm,
    ShortfallResolveForm,
)
from loyalty.ledger import Actor, IdempotencyConflict
from loyalty.models import LedgerEntry, Member, PointsAccount, PointsShortfall, Redemption
from loyalty.roles import Role
from loyalty.shortfalls import shortfall_resolve
from loyalty.tables import CsvExport, LedgerEntryTable, MemberTable, RedemptionTable, ShortfallTable

RECENT_ENTRIES = 10
DAY_ENTRIES_LIMIT = 100
HISTORY_PAGE_SIZE = 25


@login_required
def no_role(request):
    return render(request, "loyalty/no_role.html", status=403)


def _account(member: Member) -> PointsAccount:
    # Every member gets an account when created; one made some other way gets an empty one now.
    try:
        return member.account
    except PointsAccount.DoesNotExist:
        return ledger.open_account(member=member)


def _member_context(request, member: Member, *, tab: str) -> dict:
    return {
        "member": member,
        "account": _account(member),
        "program": member.program,
        "tab": tab,
        "can_adjust": has_role(request.user, Role.SUPERVISOR),
    }


def _new_adjustment_form() -> AdjustmentForm:
    return AdjustmentForm(initial={"idempotency_key": uuid.uuid4()})


class MemberSearchView(RoleRequiredMixin, ExportMixin, SingleTableMixin, FilterView):
    required_role = Role.AGENT
    table_class = MemberTable
    filterset_class = MemberFilter
    template_name = "loyalty/member_search.html"
    table_pagination = {"per_page": 25}
    export_class = CsvExport

    def get_queryset(self):
        return selectors.member_list(user=self.request.user)

    def get_export_filename(self, export_format):
        return f"members-{timezone.localdate():%Y-%m-%d}.{export_format}"


member_search = MemberSearchView.as_view()


class MemberLedgerView(RoleRequiredMixin, ExportMixin, SingleTableMixin, FilterView):
    required_role = Role.AGENT
    table_class = LedgerEntryTable
    filterset_class = LedgerEntryFilter
    template_name = "loyalty/ledger_list.html"
    table_pagination = {"per_page": 50}
    export_class = CsvExport

    def get(self, request, *args, **kwargs):
        self.member = selectors.member_get(user=request.user, number=kwargs["number"])
        # Date filters, cells and the CSV all read in the program's time zone, so render here.
        with timezone.override(self.member.program.tz):
            response = super().get(request, *args, **kwargs)
            if hasattr(response, "render"):
                response.render()
        return response

    def get_queryset(self):
        return selectors.ledger_entries(account=_account(self.member))

    def get_table_kwargs(self):
        return {"membership_number": self.member.membership_number}

    def get_export_filename(self, export_format):
        return f"ledger-{self.member.membership_number}.{export_format}"

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            **_member_context(self.request, self.member, tab="ledger"),
        }


member_ledger = MemberLedgerView.as_view()


@require_GET
@role_required(Role.AGENT)
def member_detail(request, number):
    member = selectors.member_get(user=request.user, number=number)
    context = _member_context(request, member, tab="overview")
    overview = selectors.member_overview(account=context["account"], recent=RECENT_ENTRIES)
    recent = LedgerEntryTable(
        overview.recent_entries,
        membership_number=member.membership_number,
        orderable=False,
        exclude=("occurred_at", "source"),
    )
    context.update(
        overview=overview,
        recent_table=recent,
        open_shortfalls=selectors.open_shortfall_count(member=member),
    )
    if context["can_adjust"]:
        context["adjust_form"] = _new_adjustment_form()
    with timezone.override(member.program.tz):
        return render(request, "loyalty/member_detail.html", context)


@require_GET
@role_required(Role.AGENT)
def member_explain(request, number):
    member = selectors.member_get(user=request.user, number=number)
    context = _member_context(request, member, tab="explain")
    context["explanation"] = selectors.balance_explanation(account=context["account"])
    with timezone.override(member.program.tz):
        return render(request, "loyalty/explain.html", context)


@require_GET
@role_required(Role.AGENT)
def member_balance_on(request, number):
    member = selectors.member_get(user=request.user, number=number)
    context = _member_context(request, member, tab="balance_on")
    tz = member.program.tz
    status = 200
    if "at" in request.GET:
        form = BalanceOnDateForm(request.GET, tz=tz)
        if form.is_valid():
            moment = form.cleaned_data["at"]
            start, end = selectors.local_day_bounds(moment.day, tz)
            entries = selectors.entries_posted_between(
                account=context["account"], start=start, end=end, limit=DAY_ENTRIES_LIMIT
            )
            context.update(
                moment=moment,
                in_progress=moment.at > timezone.now(),
                snapshot=ledger.balance_as_of(account=context["account"], moment=moment.at),
                day_entries=entries[:DAY_ENTRIES_LIMIT],
                more_day_entries=len(entries) > DAY_ENTRIES_LIMIT,
            )
        else:
            status = 400
    else:
        form = BalanceOnDateForm(initial={"at": timezone.localdate(timezone=tz).isoformat()}, tz=tz)
    context["form"] = form
    with timezone.override(tz):
        return render(request, "loyalty/balance_on_date.html", context, status=status)


@require_GET
@role_required(Role.AGENT)
def member_history(request, number):
    member = selectors.member_get(user=request.user, number=number)
    context = _member_context(request, member, tab="history")
    records = member.history.select_related("history_user").order_by("-history_date", "-history_id")
    page = Paginator(records, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    items = list(page.object_list)
    # The record just before this page's oldest one, to diff it against (one query, not one per row).
    older = records[page.end_index()] if items and page.has_next() else None
    context.update(page=page, rows=selectors.history_rows(items, older=older))
    with timezone.override(member.program.tz):
        return render(request, "loyalty/member_history.html", context)


@require_http_methods(["GET", "POST"])
@role_required(Role.SUPERVISOR)
def member_adjust(request, number):
    """A manual correction through the ledger. Supervisors only for now (agents will request them)."""
    member = selectors.member_get(user=request.user, number=number)
    context = _member_context(request, member, tab="adjust")
    status = 200
    if request.method == "POST":
        form = AdjustmentForm(request.POST)
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            try:
                posting = ledger.adjust(
                    account=context["account"],
                    points=data["points"],
                    reason=data["reason"],
                    actor=Actor.of_user(request.user),
                    idempotency_key=f"agent-adjust:{data['idempotency_key']}",
                    source=LedgerEntry.Source.AGENT,
                )
            except IdempotencyConflict:
                # The same form was sent before with other values: nothing new is posted.
                # A fresh key lets the supervisor post this one deliberately.
                fresh = request.POST.copy()
                fresh["idempotency_key"] = str(uuid.uuid4())
                form = AdjustmentForm(fresh)
                form.is_valid()
                form.add_error(
                    None,
                    "This form had already been submitted with other values; that adjustment stands. "
                    "Check the ledger, then submit again if this one is also needed.",
                )
                status = 409
            except ApplicationError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
                status = error.status
            else:
                _announce(request, posting)
                return redirect(member)
    else:
        form = _new_adjustment_form()
    context["form"] = form
    with timezone.override(member.program.tz):
        return render(request, "loyalty/adjust.html", context, status=status)


def _announce(request, posting: ledger.Posting) -> None:
    entry = posting.entry
    if posting.replayed:
        messages.info(request, f"This adjustment was already posted (entry #{entry.pk}); nothing changed.")
    else:
        messages.success(
            request,
            f"Adjustment of {entry.points + entry.pending_points:+,d} points posted (entry #{entry.pk}). "
            f"Balance now {entry.balance_after:,d}.",
        )


def _form_error(form: forms.Form, error: ApplicationError, aliases: dict | None = None) -> None:
    """Put a service's refusal on the form field it names, or on the form as a whole."""
    field = (aliases or {}).get(error.field, error.field)
    form.add_error(field if field in form.fields else None, error.message)


class StaffQueueView(RoleRequiredMixin, ExportMixin, SingleTableMixin, FilterView):
    """A list across the agent's programs, shown in their time zone when they all share one."""

    required_role = Role.AGENT
    table_pagination = {"per_page": 50}
    export_class = CsvExport
    export_name = ""

    def get(self, request, *args, **kwargs):
        self.scope = selectors.staff_scope(user=request.user)
        # Date filters, cells and the CSV all read in that time zone, so render here.
        with timezone.override(self.scope.time_zone or timezone.get_default_timezone()):
            response = super().get(request, *args, **kwargs)
            if hasattr(response, "render"):
                response.render()
        return response

    def get_export_filename(self, export_format):
        return f"{self.export_name}-{timezone.localdate():%Y-%m-%d}.{export_format}"

    def get_table(self, **kwargs):
        table = super().get_table(**kwargs)
        if self.scope.programs == 1:
            table.columns.hide("program")  # on the page only: the CSV keeps it
        return table

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "time_zone": timezone.get_current_timezone_name()}


# --- Redemptions --------------------------------------------------------------------


class RedemptionListView(StaffQueueView):
    table_class = RedemptionTable
    filterset_class = RedemptionFilter
    template_name = "loyalty/redemption_list.html"
    export_name = "redemptions"

    def get_queryset(self):
        return selectors.redemption_list(user=self.request.user)


redemption_list = RedemptionListView.as_view()

Status = Redemption.Status

# The action that moves a redemption to each status, its form, and how the page names it.
_ACTION_OF_STATUS = {
    Status.APPROVED: "approve",
    Status.FULFILLED: "fulfil",
    Status.REJECTED: "reject",
    Status.CANCELLED: "cancel",
}
REDEMPTION_ACTIONS = {
    "approve": RedemptionApproveForm,
    "fulfil": RedemptionFulfilForm,
    "reject": RedemptionReasonForm,
    "cancel": RedemptionReasonForm,
}


def _redemption_page(request, redemption: Redemption, *, bound: dict | None = None, status: int = 200):
    member = redemption.member
    allowed = [
        _ACTION_OF_STATUS[to]
        for to in _ACTION_OF_STATUS
        if to in redemptions.TRANSITIONS.get(redemption.status, ())
    ]
    action_forms = {action: REDEMPTION_ACTIONS[action](prefix=action) for action in allowed}
    # A refused form comes back with its errors; one for a move no longer possible is not offered again.
    action_forms.update({action: form for action, form in (bound or {}).items() if action in action_forms})
    history, more_history = selectors.redemption_history(redemption=redemption)
    context = {
        "redemption": redemption,
        "member": member,
        "account": _account(member),
        "program": redemption.program,
        "reward": redemption.reward,
        "entries": [e for e in (redemption.debit_entry, redemption.refund_entry) if e is not None],
        "history": history,
        "more_history": more_history,
        "action_forms": action_forms,
        "is_shipment": redemption.reward.fulfilment == redemption.reward.Fulfilment.SHIPMENT,
    }
    with timezone.override(redemption.program.tz):
        return render(request, "loyalty/redemption_detail.html", context, status=status)


@require_GET
@role_required(Role.AGENT)
def redemption_detail(request, pk):
    return _redemption_page(request, selectors.redemption_get(user=request.user, pk=pk))


def _apply(action: str, redemption: Redemption, actor: Actor, data: dict) -> redemptions.RedemptionResult:
    if action == "approve":
        return redemptions.redemption_approve(redemption=redemption, actor=actor)
    if action == "fulfil":
        return redemptions.redemption_fulfil(
            redemption=redemption, actor=actor, shipping_note=data["shipping_note"]
        )
    close = redemptions.redemption_reject if action == "reject" else redemptions.redemption_cancel
    return close(redemption=redemption, actor=actor, reason=data["reason"], channel=LedgerEntry.Source.AGENT)


@require_POST
@role_required(Role.AGENT)
def redemption_action(request, pk, action):
    """Approve, fulfil, reject or cancel. A second click finds the move made and changes nothing."""
    if action not in REDEMPTION_ACTIONS:
        raise Http404("No such action.")
    redemption = selectors.redemption_get(user=request.user, pk=pk)
    form = REDEMPTION_ACTIONS[action](request.POST, prefix=action)
    status = 400
    if form.is_valid():
        try:
            result = _apply(action, redemption, Actor.of_user(request.user), form.cleaned_data)
        except ApplicationError as error:
            # Refused (an illegal move, a missing note): nothing changed; say why on the page.
            messages.error(request, error.message)
            _form_error(form, error)
            status = error.status
        else:
            _announce_redemption(request, result)
            return redirect("loyalty:redemption_detail", pk=redemption.pk)
    return _redemption_page(request, redemption, bound={action: form}, status=status)


def _announce_redemption(request, result: redemptions.RedemptionResult) -> None:
    redemption = result.redemption
    label = f"Redemption #{redemption.pk}"
    status = redemption.get_status_display().lower()
    if result.replayed:
        messages.info(request, f"{label} was already {status}; nothing changed.")
        return
    if redemption.status in (Status.REJECTED, Status.CANCELLED):
        balance = redemption.refund_entry.balance_after
        messages.success(
            request,
            f"{label} {status}: {redemption.points:,d} points refunded, balance now {balance:,d}.",
        )
    elif redemption.status == Status.FULFILLED and redemption.voucher_code:
        messages.success(request, f"{label} fulfilled: voucher code {redemption.voucher_code}.")
    else:
        messages.success(request, f"{label} {status}.")


def _new_redeem_form(rewards) -> RedeemForm:
    return RedeemForm(initial={"idempotency_key": uuid.uuid4()}, rewards=rewards)


@require_http_methods(["GET", "POST"])
@role_required(Role.AGENT)
def member_redeem(request, number):
    """An agent redeems a reward for a member: the points leave the balance at once."""
    member = selectors.member_get(user=request.user, number=number)
    context = _member_context(request, member, tab="redeem")
    rewards = selectors.redeemable_rewards(member=member)
    status = 200
    if request.method == "POST":
        form = RedeemForm(request.POST, rewards=rewards)
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            try:
                result = redemptions.redemption_request(
                    member=member,
                    reward=data["reward"],
                    idempotency_key=f"agent:{data['idempotency_key']}",
                    channel=LedgerEntry.Source.AGENT,
                    actor=Actor.of_user(request.user),
                    requested_by=request.user,
                )
            except IdempotencyConflict:
                # This form was sent before for another reward: that request stands.
                fresh = request.POST.copy()
                fresh["idempotency_key"] = str(uuid.uuid4())
                form = RedeemForm(fresh, rewards=rewards)
                form.is_valid()
                form.add_error(
                    None,
                    "This form had already been submitted for another reward; that request stands. "
                    "Check the member's redemptions, then submit again if this one is also wanted.",
                )
                status = 409
            except ApplicationError as error:
                _form_error(form, error, aliases={"points": "reward"})
                status = error.status
            else:
                redemption = result.redemption
                if result.replayed:
                    messages.info(
                        request, f"This redemption was already requested (#{redemption.pk}); nothing changed."
                    )
                else:
                    balance = redemption.debit_entry.balance_after
                    messages.success(
                        request,
                        f"{redemption.reward.name} requested for {redemption.points:,d} points "
                        f"(redemption #{redemption.pk}). Balance now {balance:,d}.",
                    )
                return redirect("loyalty:redemption_detail", pk=redemption.pk)
    else:
        form = _new_redeem_form(rewards)
    context.update(
        form=form,
        options=selectors.reward_options(member=member, balance=context["account"].balance),
        selected=str(form["reward"].value() or ""),
        member_redemptions_url=_member_redemptions_url(member),
    )
    with timezone.override(member.program.tz):
        return render(request, "loyalty/redemption_request.html", context, status=status)


def _member_redemptions_url(member: Member) -> str:
    return f"{reverse('loyalty:redemption_list')}?q={member.membership_number}&status=all"


# --- Shortfalls ---------------------------------------------------------------------


class ShortfallListView(StaffQueueView):
    table_class = ShortfallTable
    filterset_class = ShortfallFilter
    template_name = "loyalty/shortfall_list.html"
    export_name = "shortfalls"

    def get_queryset(self):
        return selectors.shortfall_list(user=self.request.user)


shortfall_list = ShortfallListView.as_view()


def _shortfall_page(request, shortfall: PointsShortfall, *, form=None, status: int = 200):
    member = shortfall.member
    is_open = shortfall.status == PointsShortfall.Status.OPEN
    context = {
        "shortfall": shortfall,
        "member": member,
        "account": _account(member),
        "program": shortfall.program,
        "history": selectors.shortfall_history(shortfall=shortfall),
        "form": (form or ShortfallResolveForm()) if is_open else None,
    }
    with timezone.override(shortfall.program.tz):
        return render(request, "loyalty/shortfall_detail.html", context, status=status)


@require_GET
@role_required(Role.AGENT)
def shortfall_detail(request, pk):
    return _shortfall_page(request, selectors.shortfall_get(user=request.user, pk=pk))


@require_POST
@role_required(Role.AGENT)
def shortfall_resolve_view(request, pk):
    """Close a shortfall with a note. Resolving twice keeps the first note."""
    shortfall = selectors.shortfall_get(user=request.user, pk=pk)
    form = ShortfallResolveForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            result = shortfall_resolve(
                shortfall=shortfall, actor=Actor.of_user(request.user), note=form.cleaned_data["note"]
            )
        except ApplicationError as error:
            _form_error(form, error)
            status = error.status
        else:
            if result.replayed:
                messages.info(request, f"Shortfall #{shortfall.pk} was already resolved; nothing changed.")
            else:
                messages.success(request, f"Shortfall #{shortfall.pk} resolved.")
            return redirect("loyalty:shortfall_list")
    return _shortfall_page(request, shortfall, form=form, status=status)


# --- Earn preview -------------------------------------------------------------------


@require_GET
@role_required(Role.AGENT)
def member_preview(request, number):
    """'What would this earn?': the calculation posting would make, with nothing written."""
    member = selectors.member_get(user=request.user, number=number)
    context = _member_context(request, member, tab="preview")
    activities = selectors.earning_activities(program=member.program)
    status = 200
    # The form reads its date-time in the program's time zone, and the page shows times in it.
    with timezone.override(member.program.tz):
        if "activity" in request.GET:
            form = PreviewForm(request.GET, activities=activities)
            status = 400
            if form.is_valid():
                data = form.cleaned_data
                moment = data["occurred_at"] or timezone.now()
                try:
                    calculation = activity_preview(
                        member=member, code=data["activity"], amount=data["amount"], occurred_at=moment
                    )
                except ApplicationError as error:
                    _form_error(form, error, aliases={"type": "activity"})
                    status = error.status
                else:
                    status = 200
                    context.update(
                        calculation=calculation,
                        moment=moment,
                        in_future=moment > timezone.now(),
                        currency=member.program.currency,
                    )
        else:
            form = PreviewForm(activities=activities)
        context.update(form=form, has_activities=bool(activities))
        return render(request, "loyalty/preview.html", context, status=status)
