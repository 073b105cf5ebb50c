"""Filters of the agent's list screens (django-filter FilterSets)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import django_filters
from django import forms
from django.http import QueryDict
from django.utils import timezone

from loyalty.access import staff_programs
from loyalty.models import LedgerEntry, Member, PointsShortfall, Program, Redemption, Reward
from loyalty.selectors import OPEN_REDEMPTION_STATUSES, members_matching


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


def _from_day(queryset, field: str, day: date):
    """Rows whose `field` is on or after the start of `day` (in the current time zone)."""
    if day < EARLIEST_DAY:  # 1 Jan 0001 in Paris is before the first UTC instant
        return queryset
    return queryset.filter(**{f"{field}__gte": _local_midnight(day)})


def _to_day(queryset, field: str, day: date):
    """Rows whose `field` is before the end of `day`, inclusive (in the current time zone)."""
    try:
        end = _local_midnight(day + timedelta(days=1))
    except OverflowError:  # 31 Dec 9999: no upper bound at all
        return queryset
    return queryset.filter(**{f"{field}__lt": end})


def _date_input():
    return forms.DateInput(attrs={"type": "date"})


def _member_text_filter():
    return django_filters.CharFilter(
        label="Member",
        method="filter_member",
        widget=forms.TextInput(attrs={"placeholder": "Number or name", "type": "search"}),
    )


def _matching_members(queryset, value):
    """Rows of the members an agent's text finds (number, name, email or phone, as the member search)."""
    if not value.split():
        return queryset
    return queryset.filter(member__in=members_matching(Member.objects.all(), value))


def _staff_rewards(request):
    if request is None:
        return Reward.objects.none()
    return Reward.objects.filter(program__in=staff_programs(request.user))


class LedgerEntryFilter(django_filters.FilterSet):
    entry = django_filters.NumberFilter(field_name="id", label="Entry #")
    kind = django_filters.ChoiceFilter(choices=LedgerEntry.Kind.choices, empty_label="Any kind")
    source = django_filters.ChoiceFilter(choices=LedgerEntry.Source.choices, empty_label="Any source")
    posted_from = django_filters.DateFilter(
        label="Posted from", method="filter_posted_from", widget=_date_input()
    )
    posted_to = django_filters.DateFilter(
        label="Posted to (inclusive)", method="filter_posted_to", widget=_date_input()
    )
    reference = django_filters.CharFilter(label="Reference", lookup_expr="icontains")

    class Meta:
        model = LedgerEntry
        fields = ["entry", "kind", "source", "posted_from", "posted_to", "reference"]

    def filter_posted_from(self, queryset, name, value):
        return _from_day(queryset, "posted_at", value)

    def filter_posted_to(self, queryset, name, value):
        return _to_day(queryset, "posted_at", value)


OPEN, ALL = "open", "all"


class RedemptionFilter(django_filters.FilterSet):
    """The redemption queue. Without a status it shows the open ones ("Open": requested or approved)."""

    q = _member_text_filter()
    status = django_filters.ChoiceFilter(
        choices=[(OPEN, "Open"), *Redemption.Status.choices, (ALL, "Any status")],
        empty_label=None,
        method="filter_status",
    )
    program = django_filters.ModelChoiceFilter(queryset=_staff_programs, empty_label="All my programs")
    reward = django_filters.ModelChoiceFilter(queryset=_staff_rewards, empty_label="Any reward")
    channel = django_filters.ChoiceFilter(choices=LedgerEntry.Source.choices, empty_label="Any channel")
    requested_from = django_filters.DateFilter(
        label="Requested from", method="filter_requested_from", widget=_date_input()
    )
    requested_to = django_filters.DateFilter(
        label="Requested to (inclusive)", method="filter_requested_to", widget=_date_input()
    )

    class Meta:
        model = Redemption
        fields = ["q", "status", "program", "reward", "channel", "requested_from", "requested_to"]

    def __init__(self, data=None, *args, **kwargs):
        data = data.copy() if data is not None else QueryDict(mutable=True)
        if not data.get("status"):
            data["status"] = OPEN
        super().__init__(data, *args, **kwargs)

    def filter_member(self, queryset, name, value):
        return _matching_members(queryset, value)

    def filter_status(self, queryset, name, value):
        if value == ALL:
            return queryset
        if value == OPEN:
            return queryset.filter(status__in=OPEN_REDEMPTION_STATUSES)
        return queryset.filter(status=value)

    def filter_requested_from(self, queryset, name, value):
        return _from_day(queryset, "created_at", value)

    def filter_requested_to(self, queryset, name, value):
        return _to_day(queryset, "created_at", value)


class ShortfallFilter(django_filters.FilterSet):
    q = _member_text_filter()
    status = django_filters.ChoiceFilter(choices=PointsShortfall.Status.choices, empty_label="Any status")
    program = django_filters.ModelChoiceFilter(queryset=_staff_programs, empty_label="All my programs")

    class Meta:
        model = PointsShortfall
        fields = ["q", "status", "program"]

    def filter_member(self, queryset, name, value):
        return _matching_members(queryset, value)
