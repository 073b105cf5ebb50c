"""Filters of the dispute queue."""

from __future__ import annotations

import django_filters
from django.http import QueryDict
from django.utils import timezone

from disputes.models import AdjustmentRequest, Dispute, Priority
from disputes.selectors import near_due_condition, overdue_condition
from disputes.services import CLOSED
from loyalty.filters import _matching_members, _member_text_filter, _staff_programs

OPEN, ALL = "open", "all"
MINE, UNASSIGNED, ANYONE = "mine", "unassigned", "anyone"
OVERDUE, NEAR_DUE, DUE_SOON_OR_LATE = "overdue", "near", "attention"


class DisputeFilter(django_filters.FilterSet):
    """Without a status the queue shows open tickets (anything not resolved or rejected)."""

    q = _member_text_filter()
    queue = django_filters.ChoiceFilter(
        label="Whose",
        choices=[(ANYONE, "Anyone's"), (MINE, "Mine"), (UNASSIGNED, "Unassigned")],
        empty_label=None,
        method="filter_queue",
    )
    status = django_filters.ChoiceFilter(
        choices=[(OPEN, "Open (not closed)"), *Dispute.Status.choices, (ALL, "Any status")],
        empty_label=None,
        method="filter_status",
    )
    category = django_filters.ChoiceFilter(choices=Dispute.Category.choices, empty_label="Any category")
    priority = django_filters.ChoiceFilter(choices=Priority.choices, empty_label="Any priority")
    program = django_filters.ModelChoiceFilter(queryset=_staff_programs, empty_label="All my programs")
    due = django_filters.ChoiceFilter(
        label="Due",
        choices=[(OVERDUE, "Overdue"), (NEAR_DUE, "Due soon"), (DUE_SOON_OR_LATE, "Overdue or due soon")],
        empty_label="Any time",
        method="filter_due",
    )

    class Meta:
        model = Dispute
        fields = ["q", "queue", "status", "category", "priority", "program", "due"]

    def __init__(self, data=None, *args, **kwargs):
        data = data.copy() if data is not None else QueryDict(mutable=True)
        data.setdefault("status", OPEN)
        data.setdefault("queue", ANYONE)
        for key in ("status", "queue"):
            if not data.get(key):
                data[key] = OPEN if key == "status" else ANYONE
        super().__init__(data, *args, **kwargs)

    def filter_member(self, queryset, name, value):
        return _matching_members(queryset, value)

    def filter_queue(self, queryset, name, value):
        if value == MINE:
            return queryset.filter(assignee=self.request.user)
        if value == UNASSIGNED:
            return queryset.filter(assignee__isnull=True)
        return queryset

    def filter_status(self, queryset, name, value):
        if value == ALL:
            return queryset
        if value == OPEN:
            return queryset.exclude(status__in=CLOSED)
        return queryset.filter(status=value)

    def filter_due(self, queryset, name, value):
        now = timezone.now()
        if value == OVERDUE:
            return queryset.filter(overdue_condition(now))
        if value == NEAR_DUE:
            return queryset.filter(near_due_condition(now))
        return queryset.filter(overdue_condition(now) | near_due_condition(now))


class AdjustmentFilter(django_filters.FilterSet):
    q = _member_text_filter()
    program = django_filters.ModelChoiceFilter(queryset=_staff_programs, empty_label="All my programs")

    class Meta:
        model = AdjustmentRequest
        fields = ["q", "program"]

    def filter_member(self, queryset, name, value):
        return queryset.filter(dispute__in=_matching_members(Dispute.objects.all(), value))
