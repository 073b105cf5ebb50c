"""Filters of the referral queue (django-filter)."""

from __future__ import annotations

import django_filters
from django import forms

from loyalty.filters import _date_input, _from_day, _staff_programs, _to_day
from referrals.models import Referral
from referrals.selectors import referrals_matching

REVIEW = "review"


class ReferralFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        label="Search",
        method="filter_text",
        widget=forms.TextInput(attrs={"placeholder": "Code, member number, name or email", "type": "search"}),
    )
    status = django_filters.ChoiceFilter(
        choices=[(REVIEW, "Awaiting review (held or qualified)"), *Referral.Status.choices],
        empty_label="Any status",
        method="filter_status",
    )
    program = django_filters.ModelChoiceFilter(queryset=_staff_programs, empty_label="All my programs")
    channel = django_filters.ChoiceFilter(choices=Referral.Channel.choices, empty_label="Any channel")
    joined_from = django_filters.DateFilter(label="Joined from", method="filter_from", widget=_date_input())
    joined_to = django_filters.DateFilter(
        label="Joined to (inclusive)", method="filter_to", widget=_date_input()
    )

    class Meta:
        model = Referral
        fields = ["q", "status", "program", "channel", "joined_from", "joined_to"]

    def filter_text(self, queryset, name, value):
        return referrals_matching(queryset, value)

    def filter_status(self, queryset, name, value):
        if value == REVIEW:
            return queryset.filter(status__in=(Referral.Status.HELD, Referral.Status.QUALIFIED))
        return queryset.filter(status=value)

    def filter_from(self, queryset, name, value):
        return _from_day(queryset, "signed_up_at", value)

    def filter_to(self, queryset, name, value):
        return _to_day(queryset, "signed_up_at", value)
