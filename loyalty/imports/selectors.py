"""Reads for the import screens, scoped to the staff user's programs."""

from __future__ import annotations

from django.db.models import QuerySet

from loyalty.access import get_for_staff_or_404, scope_to_staff
from loyalty.imports.models import ImportBatch


def import_list(*, user) -> QuerySet[ImportBatch]:
    queryset = ImportBatch.objects.select_related("program", "created_by").defer("content").order_by("-id")
    return scope_to_staff(queryset, user)


def import_get(*, user, pk: int) -> ImportBatch:
    return get_for_staff_or_404(
        ImportBatch.objects.select_related("program", "created_by").defer("content"), user, pk=pk
    )
