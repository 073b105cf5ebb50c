"""Filters of the agent's list screens (django-filter FilterSets)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import django_filters
from django import forms
from django.utils import timezone

from loyalty.access import staff_programs
from loyalty.models import LedgerEntry, Member, Program
from loyalty.selectors import members_matching


def _staff_programs(request):
    # Only the programs the agent works on are offered (and accepted).
    if request is None:
        return Program.objects.none()
    return staff_programs(request.user)


class MemberFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        label="Search",
        method="filter_text",
        widget=forms.TextInput(
            attrs={"placeholder": "Number, name, email or phone", "autofocus": True, "type": "search"}
        ),
    )
    program = django_filters.ModelChoiceFilter(queryset=_staff_programs, empty_label="All my programs")
    status = django_filters.ChoiceFilter(choices=Member.Status.choices, empty_label="Any status")

    class Meta:
        model = Member
        fields = ["q", "program", "status"]

    def filter_text(self, queryset, name, value):
        return members_matching(queryset, value)


# No ledger is older; earlier dates mean "from the start" (and avoid time-zone underflow).
EARLIEST_DAY = date(1900, 1, 1)


def _local_midnight(day) -> datetime:
    """Midnight starting `day` in the current time zone (the views switch to the program's)."""
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


class LedgerEntryFilter(django_filters.FilterSet):
    entry = django_filters.NumberFilter(field_name="id", label="Entry #")
    kind = django_filters.ChoiceFilter(choices=LedgerEntry.Kind.choices, empty_label="Any kind")
    source = django_filters.ChoiceFilter(choices=LedgerEntry.Source.choices, empty_label="Any source")
    posted_from = django_filters.DateFilter(
        label="Posted from", method="filter_posted_from", widget=forms.DateInput(attrs={"type": "date"})
    )
    posted_to = django_filters.DateFilter(
        label="Posted to (inclusive)",
        method="filter_posted_to",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    reference = django_filters.CharFilter(label="Reference", lookup_expr="icontains")

    class Meta:
        model = LedgerEntry
        fields = ["entry", "kind", "source", "posted_from", "posted_to", "reference"]

    def filter_posted_from(self, queryset, name, value):
        if value < EARLIEST_DAY:  # 1 Jan 0001 in Paris is before the first UTC instant
            return queryset
        return queryset.filter(posted_at__gte=_local_midnight(value))

    def filter_posted_to(self, queryset, name, value):
        try:
            end = _local_midnight(value + timedelta(days=1))
        except OverflowError:  # 31 Dec 9999: no upper bound at all
            return queryset
        return queryset.filter(posted_at__lt=end)
