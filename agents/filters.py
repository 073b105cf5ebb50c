"""Filters of the agents app's list screens."""

from __future__ import annotations

import django_filters
from django import forms

from agents.models import Team
from loyalty.filters import _staff_programs


class TeamFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        field_name="name",
        lookup_expr="icontains",
        label="Team name",
        widget=forms.TextInput(attrs={"type": "search"}),
    )
    program = django_filters.ModelChoiceFilter(queryset=_staff_programs, empty_label="All my programs")

    class Meta:
        model = Team
        fields = ["q", "program"]
