"""Filters of the member's lists (their history and their redemptions)."""

from __future__ import annotations

import django_filters
from django import forms

from loyalty.filters import _from_day, _to_day
from loyalty.models import LedgerEntry, Redemption
from loyalty.portal.selectors import KIND_CHOICES


def _date_input():
    return forms.DateInput(attrs={"type": "date"})


class HistoryFilter(django_filters.FilterSet):
    """By kind and by the day things happened, in the program's time zone (the view switches to it)."""

    kind = django_filters.ChoiceFilter(label="What", choices=KIND_CHOICES, empty_label="Everything")
    date_from = django_filters.DateFilter(label="From", method="filter_from", widget=_date_input())
    date_to = django_filters.DateFilter(label="To (inclusive)", method="filter_to", widget=_date_input())

    class Meta:
        model = LedgerEntry
        fields = ["kind", "date_from", "date_to"]

    def filter_from(self, queryset, name, value):
        return _from_day(queryset, "occurred_at", value)

    def filter_to(self, queryset, name, value):
        return _to_day(queryset, "occurred_at", value)


class MemberRedemptionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Redemption.Status.choices, empty_label="Any status")

    class Meta:
        model = Redemption
        fields = ["status"]
