"""Referral screens: the share link, the member's own page, and the agent's queue, page and report.

Every staff view checks the role (anonymous users go to login, other roles get a
403), then loads objects through the staff scope (another program's referral
is a 404). Times are shown in the program's time zone.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_tables2 import RequestConfig

from loyalty import selectors as loyalty_selectors
from loyalty.access import get_for_member_or_404, program_asked, role_required, staff_programs
from loyalty.charts import line_chart
from loyalty.errors import ApplicationError
from loyalty.models import Member
from loyalty.roles import Role
from loyalty.tables import CsvExport
from loyalty.views import StaffQueueView, _form_error
from referrals import selectors, services
from referrals.filters import ReferralFilter
from referrals.forms import REFERRAL_ACTIONS, AttributeForm, ReportForm
from referrals.models import DeviceSighting, Referral, ReferralPolicy
from referrals.tables import FunnelTable, ReferralTable


def _client_meta(request) -> dict:
    """What a request tells the fraud signals (REMOTE_ADDR only: forwarded headers are forgeable)."""
    return {
        "ip": request.META.get("REMOTE_ADDR") or None,
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:300],
        "device_id": _device_id(request),
    }


def _device_id(request) -> str:
    value = request.COOKIES.get(services.DEVICE_COOKIE, "")
    try:
        return uuid.UUID(value).hex
    except ValueError:
        return ""


def _keep_device_cookie(request, response, device_id: str) -> None:
    response.set_cookie(
        services.DEVICE_COOKIE,
        device_id,
        max_age=services.DEVICE_COOKIE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure(),
    )


# --- Public share link ----------------------------------------------------------------


@require_GET
def share(request, code):
    """/r/<code>: log the click, give the browser a device cookie, and send it to sign-up with the code."""
    meta = _client_meta(request)
    device_id = meta["device_id"] or uuid.uuid4().hex
    try:
        click = services.click_record(
            code=code, ip=meta["ip"], user_agent=meta["user_agent"], device_id=device_id
        )
    except ApplicationError as error:
        raise Http404("No such referral link.") from error
    try:
        target = reverse("portal:signup", kwargs={"slug": click.program.slug})
    except NoReverseMatch:  # the portal's sign-up page is not there yet
        target = reverse("login")
    response = redirect(f"{target}?ref={click.code.code}")
    _keep_device_cookie(request, response, device_id)
    return response


# --- The member's page -----------------------------------------------------------------


@require_GET
@role_required(Role.MEMBER)
def my_referrals(request):
    member = get_for_member_or_404(Member.objects.select_related("program"), request.user, member_field="")
    policy = services.active_policy(program_id=member.program_id)
    code = services.code_for_member(member=member) if policy is not None else None
    meta = _client_meta(request)
    device_id = meta["device_id"] or uuid.uuid4().hex
    # The member's own browser and address: a referee signing up from them is a fraud signal.
    services.sighting_record(
        member=member, device_id=device_id, ip=meta["ip"], context=DeviceSighting.Context.REFERRALS_PAGE
    )
    context = {
        "member": member,
        "policy": policy,
        "code": code,
        "share_url": request.build_absolute_uri(code.get_share_path()) if code else "",
        "referrals": selectors.my_referrals(member=member, policy=policy, now=timezone.now()),
    }
    with timezone.override(member.program.tz):
        response = render(request, "referrals/my_referrals.html", context)
    _keep_device_cookie(request, response, device_id)
    return response


# --- Agent screens -----------------------------------------------------------------------


class ReferralListView(StaffQueueView):
    table_class = ReferralTable
    filterset_class = ReferralFilter
    template_name = "referrals/referral_list.html"
    export_name = "referrals"

    def get_queryset(self):
        return selectors.referral_list(user=self.request.user)


referral_list = ReferralListView.as_view()


def _referral_page(request, referral: Referral, *, bound: dict | None = None, status: int = 200):
    allowed = []
    if referral.status in services.REVIEWABLE:
        allowed.append("approve")
    if referral.status in services.REJECTABLE:
        allowed.append("reject")
    action_forms = {action: REFERRAL_ACTIONS[action](prefix=action) for action in allowed}
    action_forms.update({a: form for a, form in (bound or {}).items() if a in action_forms})
    policy = ReferralPolicy.objects.filter(program_id=referral.program_id).first()
    window_end = selectors.window_end(signed_up_at=referral.signed_up_at, policy=policy)
    context = {
        "referral": referral,
        "program": referral.program,
        "referrer": referral.referrer,
        "referee": referral.referee,
        "signals": list(referral.signals.all()),
        "threshold": policy.fraud_threshold if policy else None,
        "window_end": window_end,
        "window_closed": window_end is not None and window_end < timezone.now(),
        "timeline": selectors.referral_timeline(referral=referral),
        "history": selectors.referral_history(referral=referral),
        "action_forms": action_forms,
    }
    with timezone.override(referral.program.tz):
        return render(request, "referrals/referral_detail.html", context, status=status)


@require_GET
@role_required(Role.AGENT)
def referral_detail(request, pk):
    return _referral_page(request, selectors.referral_get(user=request.user, pk=pk))


@require_POST
@role_required(Role.AGENT)
def referral_action(request, pk, action):
    """Approve (the rewards post) or reject with a reason. A second click changes nothing."""
    if action not in REFERRAL_ACTIONS:
        raise Http404("No such action.")
    referral = selectors.referral_get(user=request.user, pk=pk)
    form = REFERRAL_ACTIONS[action](request.POST, prefix=action)
    status = 400
    if form.is_valid():
        service = services.referral_approve if action == "approve" else services.referral_reject
        try:
            result = service(referral=referral, user=request.user, reason=form.cleaned_data["reason"])
        except ApplicationError as error:
            messages.error(request, error.message)
            _form_error(form, error)
            status = error.status
        else:
            done = result.referral.get_status_display().lower()
            if result.replayed:
                messages.info(request, f"Referral #{referral.pk} was already {done}; nothing changed.")
            else:
                messages.success(request, f"Referral #{referral.pk} {done}.")
            return redirect("referrals:detail", pk=referral.pk)
    return _referral_page(request, referral, bound={action: form}, status=status)


@require_http_methods(["GET", "POST"])
@role_required(Role.AGENT)
def referral_attribute(request, number):
    """An agent attributes a member's referral by hand ("my friend gave me a code, I forgot it")."""
    member = loyalty_selectors.member_get(user=request.user, number=number)
    existing = Referral.objects.filter(referee=member).select_related("referrer").first()
    status = 200
    if request.method == "POST" and existing is None:
        form = AttributeForm(request.POST)
        status = 400
        if form.is_valid():
            try:
                referral = services.referral_attribute_by_agent(
                    referee=member,
                    code=form.cleaned_data["referral_code"],
                    user=request.user,
                    reason=form.cleaned_data["reason"],
                )
            except ApplicationError as error:
                _form_error(form, error)
                status = error.status
            else:
                messages.success(
                    request,
                    f"Referral #{referral.pk} recorded: {member.full_name} was referred by "
                    f"{referral.referrer.full_name} ({referral.get_status_display().lower()}).",
                )
                return redirect("referrals:detail", pk=referral.pk)
    else:
        form = AttributeForm()
        if request.method == "POST":
            status = 409
    context = {"member": member, "program": member.program, "existing": existing, "form": form}
    return render(request, "referrals/attribute.html", context, status=status)


@require_GET
@role_required(Role.AGENT)
def referral_attribute_start(request):
    """The queue's "attribute to member number" box: on to that member's attribution page."""
    number = request.GET.get("number", "").strip()
    if not number:
        messages.error(request, "Give the member's number.")
        return redirect("referrals:list")
    member = loyalty_selectors.member_get(user=request.user, number=number)
    return redirect("referrals:attribute", number=member.membership_number)


def _report_time_zone(program, user):
    """Where the report's days are counted: the program's, or for all of the user's programs
    their common time zone (the server's when they differ)."""
    if program is not None:
        return program.tz
    return loyalty_selectors.staff_scope(user=user).time_zone or timezone.get_default_timezone()


@require_GET
@role_required(Role.AGENT)
def referral_report(request):
    programs_qs = staff_programs(request.user).order_by("name")
    data = request.GET.copy()
    # The default days end with today where the report counts its days (past midnight in Paris
    # while still yesterday in UTC, a sign-up of the last hour is today's).
    chosen = program_asked(programs_qs, data.get("program"))
    today = timezone.localdate(timezone=_report_time_zone(chosen, request.user))
    for name, default in ReportForm.default_period(today).items():
        data.setdefault(name, default.isoformat())
    form = ReportForm(data, programs=programs_qs)
    context = {"form": form}
    status = 200
    if form.is_valid():
        data = form.cleaned_data
        programs = [data["program"]] if data["program"] else list(programs_qs)
        tz = _report_time_zone(data["program"], request.user)
        report = selectors.referral_report(programs=programs, first=data["start"], last=data["end"], tz=tz)
        table = FunnelTable(report.rows)
        RequestConfig(request, paginate=False).configure(table)
        export_format = request.GET.get("_export")
        if CsvExport.is_valid_format(export_format):
            exporter = CsvExport(export_format, table)
            return exporter.response(f"referrals-{data['start']:%Y-%m-%d}-{data['end']:%Y-%m-%d}.csv")
        if export_format:
            return HttpResponse("Only CSV export is offered.", status=400, content_type="text/plain")
        context.update(
            report=report,
            table=table,
            time_zone=str(tz),
            chart=line_chart(
                labels=[f"{d:%d %b}" for d in report.days],
                series={"Sign-ups": report.signups_by_day, "Rewarded": report.rewarded_by_day},
                title="Referral sign-ups and rewards per day",
            ),
        )
    else:
        status = 400
    return render(request, "referrals/report.html", context, status=status)
