"""Staff screens: the list of imports, the upload form, an import's progress and its report."""

from __future__ import annotations

import csv

from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from loyalty.access import role_required
from loyalty.errors import ApplicationError
from loyalty.imports import selectors
from loyalty.imports.engine import import_create, import_progress, report_rows
from loyalty.imports.filters import ImportFilter
from loyalty.imports.forms import ImportUploadForm
from loyalty.imports.tables import ImportTable
from loyalty.imports.tasks import run_import
from loyalty.roles import Role
from loyalty.views import StaffQueueView

REPORT_ROWS_ON_PAGE = 200


class ImportListView(StaffQueueView):
    table_class = ImportTable
    filterset_class = ImportFilter
    template_name = "imports/import_list.html"
    export_name = "imports"

    def get_queryset(self):
        return selectors.import_list(user=self.request.user)


import_list = ImportListView.as_view()


@role_required(Role.AGENT)
def import_new(request):
    form = ImportUploadForm(request.POST or None, request.FILES or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            batch = import_create(
                program=form.cleaned_data["program"],
                kind=form.cleaned_data["kind"],
                filename=upload.name,
                content=upload.read(),
                user=request.user,
            )
        except ApplicationError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            run_import.delay_on_commit(batch.pk)
            return redirect(batch)
    return render(request, "imports/import_new.html", {"form": form}, status=400 if form.errors else 200)


@role_required(Role.AGENT)
def import_detail(request, pk: int):
    batch = selectors.import_get(user=request.user, pk=pk)
    errors = list(batch.errors.all()[:REPORT_ROWS_ON_PAGE])
    history = list(batch.history.select_related("history_user").order_by("-history_id")[:20])
    with timezone.override(batch.program.tz):
        return render(
            request,
            "imports/import_detail.html",
            {
                "batch": batch,
                "progress": import_progress(batch=batch),
                "errors": errors,
                "more_errors": batch.failed > len(errors),
                "history": history,
                "time_zone": batch.program.time_zone,
            },
        )


@role_required(Role.AGENT)
def import_report(request, pk: int):
    batch = selectors.import_get(user=request.user, pk=pk)
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="import-{batch.pk}-report.csv"'
    writer = csv.writer(response)
    writer.writerow(["line", "key", "field", "reason"])
    writer.writerows(report_rows(batch=batch))
    return response
