"""Supervisor screens: the audit browser and the program reports. Thin: parse, select, render.

Supervisors and admins only (agents get a 403); every figure and row is scoped to
the user's programs by the selectors (an out-of-scope program or change is a form
error or a 404).
"""

from __future__ import annotations

import csv

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.text import capfirst
from django.views.decorators.http import require_GET

from agents.supervisor import reports, selectors
from agents.supervisor.forms import AuditFilterForm, ReportPeriodForm
from loyalty.access import role_required
from loyalty.roles import Role
from loyalty.selectors import staff_scope

# The CSV holds at most this many changes (the newest); narrow the filters for more.
AUDIT_EXPORT_LIMIT = 10_000


def _csv_response(filename: str, rows) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerows(rows)
    return response


# Deeper pages cost more (each table gives offset + page rows): narrow the filters instead.
MAX_PAGE = 200


def _page_number(request) -> int:
    try:
        return max(1, min(int(request.GET.get("page", 1)), MAX_PAGE))
    except ValueError:
        return 1


@require_GET
@role_required(Role.SUPERVISOR)
def audit_list(request):
    form = AuditFilterForm(request.GET or None, user=request.user)
    valid = form.is_valid() if request.GET else True
    filters = form.filters() if request.GET and valid else selectors.AuditFilters()
    oldest_first = request.GET.get("order") == "oldest"
    program = filters.program
    tz = (
        program.tz
        if program
        else (staff_scope(user=request.user).time_zone or timezone.get_current_timezone())
    )
    exporting = request.GET.get("_export") == "csv"
    page = 1 if exporting else _page_number(request)
    size = AUDIT_EXPORT_LIMIT if exporting else selectors.PAGE_SIZE
    keys = (
        selectors.audit_page_keys(
            user=request.user, filters=filters, page=page, size=size, oldest_first=oldest_first
        )
        if valid
        else []
    )
    has_next = len(keys) > size and page < MAX_PAGE
    rows = selectors.audit_rows(keys=keys[:size])
    if exporting:
        return _csv_response(
            f"audit-{timezone.localdate():%Y-%m-%d}.csv",
            [
                ["When", "What", "Object id", "Member", "Change", "Author", "Reason", "Changes"],
                *(
                    [
                        timezone.localtime(row.date, tz).isoformat(),
                        row.source.name,
                        row.object_id,
                        row.member_number or "",
                        row.change_type,
                        row.author,
                        row.reason,
                        "; ".join(f"{capfirst(c.label)}: {c.old} -> {c.new}" for c in row.changes),
                    ]
                    for row in rows
                ),
            ],
        )
    context = {
        "form": form,
        "rows": rows,
        "page": page,
        "has_next": has_next,
        "has_previous": page > 1,
        "oldest_first": oldest_first,
        "time_zone": tz,
    }
    with timezone.override(tz):
        return render(request, "supervisor/audit_list.html", context, status=200 if valid else 400)


@require_GET
@role_required(Role.SUPERVISOR)
def audit_detail(request, model, key):
    row = selectors.audit_row_get(user=request.user, label=model, key=key)
    tz = staff_scope(user=request.user).time_zone or timezone.get_current_timezone()
    if row.program_id is not None:
        from loyalty.models import Program

        program = Program.objects.filter(pk=row.program_id).first()
        tz = program.tz if program else tz
    fields, values = [], []
    if not row.source.is_ledger and row.change_type != "~":
        values = selectors.record_values(row)
    if row.source.is_ledger:
        entry = row.record
        fields = [
            ("Kind", entry.get_kind_display()),
            ("Points", entry.points),
            ("Pending points", entry.pending_points),
            ("Balance after", entry.balance_after),
            ("Occurred at", timezone.localtime(entry.occurred_at, tz)),
            ("Source", entry.get_source_display()),
            ("Reference", entry.reference),
            ("Reason", entry.reason),
            ("Actor", entry.actor_label),
        ]
    with timezone.override(tz):
        return render(
            request,
            "supervisor/audit_detail.html",
            {"row": row, "ledger_fields": fields, "values": values, "time_zone": tz},
        )


@require_GET
@role_required(Role.SUPERVISOR)
def report_index(request):
    target = redirect("supervisor:report", slug=next(iter(reports.REPORTS)))
    if request.GET:
        target["Location"] += "?" + request.GET.urlencode()
    return target


@require_GET
@role_required(Role.SUPERVISOR)
def report(request, slug):
    if slug not in reports.REPORTS:
        raise Http404("No such report.")
    form = ReportPeriodForm(request.GET, user=request.user)
    context = {
        "form": form,
        "slug": slug,
        "tabs": [(key, label) for key, (label, _) in reports.REPORTS.items()],
        "query": request.GET.copy(),
    }
    if not form.is_valid():
        return render(request, "supervisor/report.html", context, status=400 if request.GET else 200)
    data = form.cleaned_data
    period = reports.Period(program=data["program"], start=data["start"], end=data["end"])
    result = reports.report_build(slug=slug, period=period)
    if request.GET.get("_export") == "csv":
        name = f"{slug}-{period.program.slug}-{period.start:%Y-%m}-{period.end:%Y-%m}.csv"
        return _csv_response(name, result.csv_rows())
    context.update(report=result, period=period)
    return render(request, "supervisor/report.html", context)
