"""Admin for teams, agent profiles, KPI records and scoring rules; award entries read-only.

Scoped like every admin screen (loyalty.admin.ScopedAdmin): a supervisor sees the rows of
their programs only. Scoring rules are never edited: a change is a new version from next
month on (the awards of past months keep the rules they were worked under).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied

from agents.models import AgentProfile, AwardEntry, KpiRecord, ScoringRule, Team, TicketKpiRecord
from agents.services import agent_profile_check, earliest_rule_start
from loyalty.access import scope_to_staff, staff_programs
from loyalty.admin import PROGRAM_FILTER, ReadOnlyAdmin, ScopedHistoryAdmin
from loyalty.errors import ApplicationError


class _TeamScopedAdmin(ScopedHistoryAdmin):
    """Rows reached through a team: only teams of the user's programs are offered or accepted."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Team:
            kwargs["queryset"] = scope_to_staff(Team.objects.select_related("program"), request.user)
        elif db_field.related_model is AgentProfile:
            kwargs["queryset"] = scope_to_staff(
                AgentProfile.objects.select_related("user"), request.user, program_field="team__program"
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        team = (
            obj.team if isinstance(obj, AgentProfile) else getattr(getattr(obj, "agent", None), "team", None)
        )
        if team is not None and not staff_programs(request.user).filter(pk=team.program_id).exists():
            raise PermissionDenied("You do not work on this team's program.")
        super().save_model(request, obj, form, change)


@admin.register(Team)
class TeamAdmin(ScopedHistoryAdmin):
    list_display = ["name", "program", "supervisor"]
    list_filter = [PROGRAM_FILTER]
    list_select_related = ["program", "supervisor"]
    search_fields = ["name"]
    raw_id_fields = ["supervisor"]


class AgentProfileForm(forms.ModelForm):
    class Meta:
        model = AgentProfile
        fields = ["user", "employee_id", "team", "supervisor", "is_active"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("user") is not None and "team" not in self.errors:
            try:
                agent_profile_check(user=cleaned["user"], team=cleaned.get("team"))
            except ApplicationError as error:
                self.add_error(error.field, error.message)
        return cleaned


@admin.register(AgentProfile)
class AgentProfileAdmin(_TeamScopedAdmin):
    form = AgentProfileForm
    program_field = "team__program"
    list_display = ["employee_id", "user", "team", "supervisor", "is_active"]
    list_filter = ["is_active", ("team", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["user", "team", "supervisor"]
    search_fields = ["employee_id", "user__username", "user__first_name", "user__last_name"]
    raw_id_fields = ["user", "supervisor"]


@admin.register(KpiRecord)
class KpiRecordAdmin(ReadOnlyAdmin, ScopedHistoryAdmin):
    """Read-only: records arrive through the KPI import (agents.imports), which checks and
    batches them; a corrected export is how a period is corrected."""

    program_field = "agent__team__program"
    list_display = ["agent", "kind", "period_start", "contacts_handled", "survey_answers", "issues", "source"]
    list_filter = ["kind", "source"]
    list_select_related = ["agent__user"]
    search_fields = ["agent__employee_id"]
    date_hierarchy = "period_start"
    raw_id_fields = ["agent"]
    show_full_result_count = False


class ScoringRuleForm(forms.ModelForm):
    class Meta:
        model = ScoringRule
        fields = [
            "program",
            "team",
            "metric",
            "direction",
            "target",
            "points",
            "lower",
            "upper",
            "cap",
            "effective_from",
        ]

    def clean_effective_from(self):
        value = self.cleaned_data["effective_from"]
        earliest = earliest_rule_start()
        if value < earliest:
            raise forms.ValidationError(f"A rule change applies from {earliest:%Y-%m-%d} at the earliest.")
        return value


@admin.register(ScoringRule)
class ScoringRuleAdmin(_TeamScopedAdmin):
    form = ScoringRuleForm
    list_display = [
        "metric",
        "program",
        "team",
        "direction",
        "target",
        "points",
        "lower",
        "upper",
        "cap",
        "effective_from",
    ]
    list_filter = [PROGRAM_FILTER, "metric"]
    list_select_related = ["program", "team"]

    def has_change_permission(self, request, obj=None):
        return False  # versions are kept as they were; add a new one instead

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AwardEntry)
class AwardEntryAdmin(ReadOnlyAdmin):
    program_field = "team__program"
    list_display = ["period_start", "agent", "rule", "seq", "kind", "points", "total_after", "posted_at"]
    list_filter = ["kind", "period_start"]
    list_select_related = ["agent__user", "rule__program", "rule__team"]
    search_fields = ["agent__employee_id", "idempotency_key"]


@admin.register(TicketKpiRecord)
class TicketKpiRecordAdmin(ReadOnlyAdmin, ScopedHistoryAdmin):
    """Written by the awards job from the dispute tickets; read here."""

    program_field = "agent__team__program"
    list_display = [
        "period_start",
        "agent",
        "first_response_seconds",
        "sla_attained_pct",
        "reopen_rate_pct",
        "resolved",
    ]
    list_select_related = ["agent__user"]
    search_fields = ["agent__employee_id"]
