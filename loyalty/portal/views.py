"""The member's self-service pages: a member only ever sees their own account.

The member is always looked up through the login, never from the URL; an id in
the URL (a reward, a redemption) is looked up within that member's scope, so
anyone else's is a 404. Times are shown in the program's time zone.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth import login
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin
from django_tables2.export import ExportMixin

from loyalty import redemptions, selectors
from loyalty.access import RoleRequiredMixin, role_required
from loyalty.errors import ApplicationError
from loyalty.ledger import Actor, IdempotencyConflict
from loyalty.models import LedgerEntry, Redemption
from loyalty.portal import selectors as portal_selectors
from loyalty.portal import services
from loyalty.portal.filters import HistoryFilter, MemberRedemptionFilter
from loyalty.portal.forms import ProfileForm, RedeemConfirmForm, SignUpForm
from loyalty.portal.tables import HistoryTable, MemberRedemptionTable
from loyalty.roles import Role
from loyalty.tables import CsvExport

RECENT_ENTRIES = 10
HISTORY_PAGE_SIZE = 25
REDEMPTIONS_PAGE_SIZE = 25
# The key prefix keeps portal redemptions apart from agents' and the API's in the program's key space.
KEY_PREFIX = "portal:"
# The backend `login` records: django-axes' backend only counts failures, it does not authenticate.
LOGIN_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _member_context(request) -> dict:
    member = portal_selectors.portal_member(user=request.user)
    return {
        "member": member,
        "account": portal_selectors.member_account(member=member),
        "program": member.program,
    }


def _form_error(form, error: ApplicationError) -> None:
    form.add_error(error.field if error.field in form.fields else None, error.message)


# --- Home -------------------------------------------------------------------------------


@require_GET
@role_required(Role.MEMBER)
def portal_home(request):
    context = _member_context(request)
    member, account = context["member"], context["account"]
    overview = selectors.member_overview(account=account, recent=RECENT_ENTRIES)
    options = portal_selectors.catalogue(member=member, balance=account.balance)
    context.update(
        overview=overview,
        recent=[
            {
                "entry": entry,
                "words": portal_selectors.entry_words(entry),
                "change": portal_selectors.entry_change(entry),
            }
            for entry in overview.recent_entries
        ],
        progress=portal_selectors.tier_progress(member=member),
        affordable=sum(1 for option in options if option.affordable and option.in_stock),
        rewards=len(options),
        elsewhere=portal_selectors.other_portal_pages(),
    )
    with timezone.override(member.program.tz):
        return render(request, "portal/home.html", context)


# --- Sign-up ------------------------------------------------------------------------------


def _client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR", "")


@require_http_methods(["GET", "POST"])
def signup(request, slug):
    """Join a program: a login and a membership in one step, then signed in."""
    program = portal_selectors.signup_program(slug=slug)
    if request.user.is_authenticated:
        messages.info(request, "You are already signed in.")
        return redirect("home")
    status = 200
    if request.method == "POST":
        form = SignUpForm(request.POST)
        status = 400
        if not services.sign_up_allowed(ip=_client_ip(request)):
            form.is_valid()
            form.add_error(
                None, "Too many sign-up attempts from your connection. Please try again in an hour."
            )
            status = 429
        elif form.is_valid():
            data = form.cleaned_data
            try:
                result = services.member_sign_up(
                    program=program,
                    first_name=data["first_name"],
                    last_name=data["last_name"],
                    email=data["email"],
                    phone=data["phone"],
                    password=data["password1"],
                    referral_code=data["referral_code"],
                    request_meta={
                        "ip": _client_ip(request),
                        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:500],
                        "device_id": request.COOKIES.get("ref_device", ""),
                    },
                )
            except ApplicationError as error:
                _form_error(form, error)
                status = error.status
            else:
                login(request, result.user, backend=LOGIN_BACKEND)
                messages.success(
                    request,
                    f"Welcome to {program.name}! "
                    f"Your membership number is {result.member.membership_number}. "
                    f"You sign in with {result.username}.",
                )
                return redirect("portal:home")
    else:
        form = SignUpForm(initial={"referral_code": request.GET.get("ref", "").strip()[:40]})
    return render(request, "portal/signup.html", {"form": form, "program": program}, status=status)


# --- Profile ----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@role_required(Role.MEMBER)
def profile(request):
    context = _member_context(request)
    member = context["member"]
    status = 200
    if request.method == "POST":
        form = ProfileForm(request.POST, instance=member)
        status = 400
        if form.is_valid():
            try:
                changed = services.member_profile_update(
                    member=member,
                    user=request.user,
                    **{name: form.cleaned_data[name] for name in services.EDITABLE_FIELDS},
                )
            except ApplicationError as error:
                _form_error(form, error)
                status = error.status
            else:
                if changed:
                    messages.success(request, "Your details are saved.")
                else:
                    messages.info(request, "Nothing changed.")
                return redirect("portal:profile")
    else:
        form = ProfileForm(instance=member)
    context.update(form=form, history=portal_selectors.profile_history(member=member))
    with timezone.override(member.program.tz):
        return render(request, "portal/profile.html", context, status=status)


# --- History ------------------------------------------------------------------------------


class MemberTableView(RoleRequiredMixin, ExportMixin, SingleTableMixin, FilterView):
    """A list of the member's own rows, rendered (cells, filters and CSV) in the program's time zone."""

    required_role = Role.MEMBER
    export_class = CsvExport
    export_name = ""

    def get(self, request, *args, **kwargs):
        self.base_context = _member_context(request)
        with timezone.override(self.base_context["program"].tz):
            response = super().get(request, *args, **kwargs)
            if hasattr(response, "render"):
                response.render()
        return response

    def get_export_filename(self, export_format):
        return f"{self.export_name}-{timezone.localdate():%Y-%m-%d}.{export_format}"

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), **self.base_context}


class HistoryView(MemberTableView):
    table_class = HistoryTable
    filterset_class = HistoryFilter
    template_name = "portal/history.html"
    table_pagination = {"per_page": HISTORY_PAGE_SIZE}
    export_name = "my-points"

    def get_queryset(self):
        return portal_selectors.history_entries(account=self.base_context["account"])


history = HistoryView.as_view()


# --- Where did my points go ---------------------------------------------------------


@require_GET
@role_required(Role.MEMBER)
def explain(request):
    context = _member_context(request)
    context["explanation"] = selectors.balance_explanation(account=context["account"])
    context["disputes"] = portal_selectors.other_portal_page(portal_selectors.DISPUTES_PATH)
    with timezone.override(context["program"].tz):
        return render(request, "portal/explain.html", context)


# --- Rewards ----------------------------------------------------------------------------


@require_GET
@role_required(Role.MEMBER)
def rewards(request):
    context = _member_context(request)
    balance = context["account"].balance
    context["rows"] = [
        {"option": option, "short": max(option.reward.cost_points - balance, 0)}
        for option in portal_selectors.catalogue(member=context["member"], balance=balance)
    ]
    with timezone.override(context["program"].tz):
        return render(request, "portal/rewards.html", context)


def _confirm_page(request, context: dict, *, error: str = "", status: int = 200):
    """The confirmation, always with a fresh key: a refused attempt wrote nothing to replay."""
    form = RedeemConfirmForm(initial={"idempotency_key": uuid.uuid4()})
    with timezone.override(context["program"].tz):
        return render(
            request, "portal/redeem_confirm.html", {**context, "form": form, "error": error}, status=status
        )


@require_http_methods(["GET", "POST"])
@role_required(Role.MEMBER)
def redeem(request, pk):
    """GET: the confirmation page (with a fresh key). POST: redeem; the same key again redeems nothing new."""
    context = _member_context(request)
    member, account = context["member"], context["account"]
    option = portal_selectors.catalogue_reward(member=member, balance=account.balance, pk=pk)
    context.update(
        option=option, reward=option.reward, balance_after=account.balance - option.reward.cost_points
    )
    if request.method == "GET":
        return _confirm_page(request, context)
    form = RedeemConfirmForm(request.POST)
    if not form.is_valid():
        return _confirm_page(
            request, context, error="This confirmation expired; please confirm again.", status=400
        )
    try:
        result = redemptions.redemption_request(
            member=member,
            reward=option.reward,
            idempotency_key=f"{KEY_PREFIX}{form.cleaned_data['idempotency_key']}",
            channel=LedgerEntry.Source.PORTAL,
            actor=Actor.of_user(request.user),
            requested_by=request.user,
        )
    except IdempotencyConflict:
        # A confirmation of another reward, sent again here: that one stands; this needs its own.
        return _confirm_page(
            request,
            context,
            error="That confirmation was for another reward. Check your redemptions, then confirm again.",
            status=409,
        )
    except ApplicationError as error:
        return _confirm_page(request, context, error=error.message, status=error.status)
    redemption = result.redemption
    if result.replayed:
        messages.info(request, "You had already confirmed this redemption; it was made once.")
    else:
        messages.success(
            request,
            f"{redemption.reward.name} is yours for {redemption.points:,d} points. "
            f"Your balance is now {redemption.debit_entry.balance_after:,d}.",
        )
    return redirect("portal:redemption_detail", pk=redemption.pk)


# --- Redemptions ----------------------------------------------------------------------


class RedemptionListView(MemberTableView):
    table_class = MemberRedemptionTable
    filterset_class = MemberRedemptionFilter
    template_name = "portal/redemption_list.html"
    table_pagination = {"per_page": REDEMPTIONS_PAGE_SIZE}
    export_name = "my-redemptions"

    def get_queryset(self):
        return portal_selectors.member_redemptions(user=self.request.user)


redemption_list = RedemptionListView.as_view()


@require_GET
@role_required(Role.MEMBER)
def redemption_detail(request, pk):
    context = _member_context(request)
    redemption = portal_selectors.member_redemption(user=request.user, pk=pk)
    context.update(
        redemption=redemption,
        timeline=portal_selectors.redemption_timeline(redemption=redemption),
        can_cancel=redemption.status == Redemption.Status.REQUESTED,
    )
    with timezone.override(context["program"].tz):
        return render(request, "portal/redemption_detail.html", context)


# What the ledger entry and the agents' redemption page say when a member withdraws.
MEMBER_CANCEL_REASON = "Cancelled by the member on the portal"


@require_POST
@role_required(Role.MEMBER)
def redemption_cancel(request, pk):
    """Withdraw a redemption nobody has acted on yet: its points go back into their lots.

    Once an agent has approved it, fulfilment may be under way, so only they can cancel it.
    Sent twice, the second is refused by the redemption's state and changes nothing.
    """
    redemption = portal_selectors.member_redemption(user=request.user, pk=pk)
    if redemption.status != Redemption.Status.REQUESTED:
        messages.error(request, "This redemption can no longer be cancelled here.")
        return redirect("portal:redemption_detail", pk=redemption.pk)
    try:
        redemptions.redemption_cancel(
            redemption=redemption,
            actor=Actor.of_user(request.user),
            reason=MEMBER_CANCEL_REASON,
            channel=LedgerEntry.Source.PORTAL,
            only_from=Redemption.Status.REQUESTED,
        )
    except ApplicationError as error:  # approved by an agent a moment ago, say
        messages.error(request, error.message)
    else:
        messages.success(request, f"Cancelled: your {redemption.points:,d} points are back in your balance.")
    return redirect("portal:redemption_detail", pk=redemption.pk)
