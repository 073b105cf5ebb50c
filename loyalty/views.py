"""Agent screens: thin views over loyalty selectors and the ledger.

Every view checks the role first (anonymous users go to the login page, other
roles get a 403), then loads the member through the staff scope (a member of
another program is a 404). Times are shown in the member's program time zone.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin
from django_tables2.export import ExportMixin

from loyalty import ledger, selectors
from loyalty.access import RoleRequiredMixin, has_role, role_required
from loyalty.errors import ApplicationError
from loyalty.filters import LedgerEntryFilter, MemberFilter
from loyalty.forms import AdjustmentForm, BalanceOnDateForm
from loyalty.ledger import Actor, IdempotencyConflict
from loyalty.models import LedgerEntry, Member, PointsAccount
from loyalty.roles import Role
from loyalty.tables import CsvExport, LedgerEntryTable, MemberTable

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
    context.update(overview=overview, recent_table=recent)
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
