"""Agent performance screens: thin views over agents.selectors.

An agent sees only their own performance page; the leaderboard shows every agent of their
programs by rank and points (never others' KPIs). Supervisors see the teams of their
programs, each agent's page and the KPIs; another program's team or agent is a 404.
Dates and windows follow the program's time zone.
"""

from __future__ import annotations

from datetime import date

from django.db.models import Sum
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.generic import TemplateView
from django_filters.views import FilterView
from django_tables2 import RequestConfig, SingleTableMixin
from django_tables2.export import ExportMixin

from agents import selectors
from agents.filters import TeamFilter
from agents.forms import LeaderboardForm, PeriodForm
from agents.models import AgentProfile
from agents.periods import THIS_MONTH, window
from agents.tables import AwardEntryTable, LeaderboardTable, TeamAgentTable, TeamTable
from loyalty.access import RoleRequiredMixin, has_role, role_required
from loyalty.charts import bar_chart
from loyalty.roles import Role
from loyalty.tables import CsvExport

AWARDS_PER_PAGE = 25


def _today(program) -> date:
    return timezone.localdate(timezone=program.tz if program is not None else None)


def _chosen_window(form: PeriodForm, program):
    key = form.cleaned_data["period"] if form.is_valid() else THIS_MONTH
    return window(key, today=_today(program))


def _points_chart(points: list) -> str:
    return bar_chart(
        labels=[f"{month:%b %Y}" for month, _ in points],
        series={"Points awarded": [total for _, total in points]},
        title="Points awarded per month",
        unit="pts",
    )


def _performance(request, agent: AgentProfile, *, own: bool):
    program = agent.team.program if agent.team_id else None
    form = PeriodForm(request.GET)
    chosen = _chosen_window(form, program)
    today = _today(program)
    points = selectors.points_by_month(agent=agent, months=selectors.recent_months(until=today))
    awards = AwardEntryTable(selectors.agent_awards(agent=agent))
    RequestConfig(request, paginate={"per_page": AWARDS_PER_PAGE}).configure(awards)
    context = {
        "agent": agent,
        "own": own,
        "form": form,
        "window": chosen,
        "standing": selectors.agent_standing(agent=agent, start=chosen.start, end=chosen.end),
        "points_chart": _points_chart(points),
        "points_by_month": points,
        "awarded_total": agent.awards.aggregate(total=Sum("points"))["total"] or 0,
        "awards": awards,
        "program": program,
    }
    with timezone.override(program.tz if program else None):
        return render(request, "agents/performance.html", context, status=200 if form.is_valid() else 400)


@require_GET
@role_required(Role.AGENT)
def my_performance(request):
    agent = selectors.agent_profile_of(request.user)
    if agent is None:
        return render(request, "agents/no_profile.html")
    return _performance(request, agent, own=True)


@require_GET
@role_required(Role.SUPERVISOR)
def agent_detail(request, employee_id):
    agent = selectors.agent_get(user=request.user, employee_id=employee_id)
    return _performance(request, agent, own=False)


class _BoardView(RoleRequiredMixin, ExportMixin, SingleTableMixin, TemplateView):
    """A ranked table for a window chosen in a GET form; a bad choice is a 400 and no rows."""

    export_class = CsvExport
    table_pagination = {"per_page": 50}
    form_class = PeriodForm

    def get_form(self):
        return self.form_class(self.request.GET)

    def get(self, request, *args, **kwargs):
        self.form = self.get_form()
        response = super().get(request, *args, **kwargs)
        if not self.form.is_valid():
            response.status_code = 400
        return response

    def window(self):
        return _chosen_window(self.form, self.program())

    def program(self):
        return None

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "form": self.form, "window": self.window()}


class LeaderboardView(_BoardView):
    required_role = Role.AGENT
    table_class = LeaderboardTable
    template_name = "agents/leaderboard.html"

    def get_form(self):
        return LeaderboardForm(self.request.GET, user=self.request.user)

    def program(self):
        data = self.form.cleaned_data if self.form.is_valid() else {}
        team = data.get("team")
        return team.program if team else data.get("program")

    def get_table_data(self):
        if not self.form.is_valid():
            return AgentProfile.objects.none()
        chosen, data = self.window(), self.form.cleaned_data
        program = data.get("program")
        return selectors.leaderboard(
            period_start=chosen.start,
            period_end=chosen.end,
            team=data.get("team"),
            program_ids=[program.pk] if program else None,
            user=self.request.user,
        )

    def get_table_kwargs(self):
        return {
            "link_agents": has_role(self.request.user, Role.SUPERVISOR),
            "me": selectors.agent_profile_of(self.request.user),
        }

    def get_export_filename(self, export_format):
        return f"leaderboard-{self.window().start:%Y-%m-%d}.{export_format}"


leaderboard = LeaderboardView.as_view()


class TeamListView(RoleRequiredMixin, ExportMixin, SingleTableMixin, FilterView):
    required_role = Role.SUPERVISOR
    table_class = TeamTable
    filterset_class = TeamFilter
    template_name = "agents/team_list.html"
    export_class = CsvExport
    table_pagination = {"per_page": 50}

    def get_queryset(self):
        return selectors.team_list(user=self.request.user)

    def get_export_filename(self, export_format):
        return f"teams-{timezone.localdate():%Y-%m-%d}.{export_format}"


team_list = TeamListView.as_view()


class TeamDetailView(_BoardView):
    required_role = Role.SUPERVISOR
    table_class = TeamAgentTable
    template_name = "agents/team_detail.html"

    def get(self, request, *args, **kwargs):
        self.team = selectors.team_get(user=request.user, pk=kwargs["pk"])
        with timezone.override(self.team.program.tz):
            response = super().get(request, *args, **kwargs)
            if hasattr(response, "render"):
                response.render()
        return response

    def program(self):
        return self.team.program

    def get_table_data(self):
        chosen = self.window()
        return selectors.leaderboard(period_start=chosen.start, period_end=chosen.end, team=self.team)

    def get_table_kwargs(self):
        return {"link_agents": True}

    def get_export_filename(self, export_format):
        return f"team-{self.team.pk}-{self.window().start:%Y-%m-%d}.{export_format}"

    def get_context_data(self, **kwargs):
        months = selectors.recent_months(until=_today(self.team.program))
        trend = selectors.team_trend(team=self.team, months=months)
        return {
            **super().get_context_data(**kwargs),
            "team": self.team,
            "trend": trend,
            "points_chart": _points_chart([(month.month, month.points) for month in trend]),
        }


team_detail = TeamDetailView.as_view()
