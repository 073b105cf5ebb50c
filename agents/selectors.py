"""Reads for the agents app: scopes, leaderboards, dashboards and trends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Count, F, OuterRef, QuerySet, Subquery, Sum, Window
from django.db.models.functions import Coalesce, Rank, TruncMonth
from django.shortcuts import get_object_or_404

from agents import scoring
from agents.models import AgentProfile, AwardEntry, KpiRecord, Metric, ScoringRule, Team
from agents.periods import next_month
from loyalty.access import scope_to_staff

TREND_MONTHS = 6


def agents_with_team_at(moment) -> QuerySet[AgentProfile]:
    """Agents annotated with `team_then`: their team at `moment`, by the profile's history.

    A profile made after `moment` (KPIs imported for months before the agent had a profile)
    counts in the team it was created with. Agents without a team then are left out.
    """
    versions = AgentProfile.history.model.objects.filter(id=OuterRef("pk")).values("team_id")
    then = versions.filter(history_date__lt=moment).order_by("-history_date", "-history_id")[:1]
    first = versions.order_by("history_date", "history_id")[:1]
    return AgentProfile.objects.annotate(team_then=Coalesce(Subquery(then), Subquery(first))).filter(
        team_then__isnull=False
    )


def agent_profile_of(user) -> AgentProfile | None:
    """The logged-in user's own profile, or None (supervisors and admins usually have none)."""
    if not user.is_authenticated:
        return None
    return AgentProfile.objects.select_related("user", "team__program").filter(user=user).first()


def team_list(*, user) -> QuerySet[Team]:
    """The teams of the programs the user works on (every team for admins)."""
    teams = Team.objects.select_related("program", "supervisor").annotate(
        agent_count=Count("agents", distinct=True)
    )
    return scope_to_staff(teams, user)


def team_get(*, user, pk: int) -> Team:
    return get_object_or_404(
        scope_to_staff(Team.objects.select_related("program", "supervisor"), user), pk=pk
    )


def agent_get(*, user, employee_id: str) -> AgentProfile:
    """An agent of one of the user's programs' teams; anyone else's is a 404."""
    profiles = AgentProfile.objects.select_related("user", "team__program", "supervisor")
    return get_object_or_404(
        scope_to_staff(profiles, user, program_field="team__program"), employee_id=employee_id
    )


def leaderboard(
    *,
    period_start: date,
    period_end: date,
    team: Team | None = None,
    program_ids=None,
    user=None,
) -> QuerySet[AgentProfile]:
    """Active agents with a team, ranked by the points their KPIs in [start, end) score.

    Each row has `rank` (ties share it: RANK() in the database), `points`, `points_rule_<id>`,
    `metric_<metric>` and the `kpi_*` sums; `team` and `user` are selected. The rules are the
    versions in force on the window's last day. Three queries whatever the number of agents.
    `user` narrows the board to that staff user's programs.
    """
    teams = Team.objects.all()
    agents = AgentProfile.objects.filter(is_active=True, team__isnull=False)
    if team is not None:
        teams, agents = teams.filter(pk=team.pk), agents.filter(team=team)
    if program_ids is not None:
        teams = teams.filter(program_id__in=program_ids)
        agents = agents.filter(team__program_id__in=program_ids)
    if user is not None:
        teams = scope_to_staff(teams, user)
        agents = scope_to_staff(agents, user, program_field="team__program")
    ruleset = scoring.rules_in_force(on=period_end - timedelta(days=1), teams=teams)
    rows = scoring.scored(
        agents.select_related("user", "team__program"), start=period_start, end=period_end, ruleset=ruleset
    )
    return rows.annotate(rank=Window(Rank(), order_by=F("points").desc())).order_by(
        "rank", "user__last_name", "user__username"
    )


@dataclass(frozen=True)
class MetricResult:
    metric: str
    label: str
    value: float | None
    rule: ScoringRule | None
    points: int

    @property
    def meets_target(self) -> bool | None:
        if self.value is None or self.rule is None:
            return None
        if self.rule.direction == ScoringRule.Direction.HIGHER:
            return self.value >= float(self.rule.target)
        return self.value <= float(self.rule.target)


@dataclass(frozen=True)
class Standing:
    """One agent in one window: KPIs against targets, points, rank in the team."""

    start: date
    end: date
    metrics: list[MetricResult]
    points: int
    rank: int | None
    team_size: int
    records: int


def agent_standing(*, agent: AgentProfile, start: date, end: date) -> Standing:
    """The agent's window, read off their team's leaderboard (so the rank is the board's)."""
    if agent.team_id is None:
        return Standing(start, end, [], 0, None, 0, 0)
    board = list(leaderboard(period_start=start, period_end=end, team=agent.team))
    row = next((r for r in board if r.pk == agent.pk), None)
    ruleset_rules = scoring.rules_in_force(on=end - timedelta(days=1), teams=[agent.team]).for_team(
        agent.team_id
    )
    if row is None:  # an inactive agent is not on the board; score them alone
        row = scoring.scored(
            AgentProfile.objects.filter(pk=agent.pk),
            start=start,
            end=end,
            ruleset=scoring.rules_in_force(on=end - timedelta(days=1), teams=[agent.team]),
        ).get()
        row.rank = None
    metrics = []
    for metric in Metric:
        rule = ruleset_rules.get(metric)
        value = getattr(row, f"metric_{metric.value}")
        points = getattr(row, scoring.points_alias(rule), 0) if rule else 0
        metrics.append(MetricResult(metric.value, metric.label, value, rule, points))
    return Standing(start, end, metrics, row.points, row.rank, len(board), row.kpi_count)


def agent_awards(*, agent: AgentProfile) -> QuerySet[AwardEntry]:
    return (
        AwardEntry.objects.filter(agent=agent)
        .select_related("rule")
        .order_by("-period_start", "rule__metric", "seq")
    )


def points_by_month(
    *, months: list[date], agent: AgentProfile | None = None, team: Team | None = None
) -> list:
    """(month, awarded points) for each month given, 0 when nothing was awarded. One query."""
    entries = AwardEntry.objects.filter(period_start__in=months)
    if agent is not None:
        entries = entries.filter(agent=agent)
    if team is not None:
        entries = entries.filter(agent__team=team)
    totals = dict(entries.values_list("period_start").annotate(total=Sum("points")).order_by())
    return [(month, totals.get(month, 0)) for month in months]


def recent_months(*, until: date, count: int = TREND_MONTHS) -> list[date]:
    """The `count` months ending with the one before `until`'s month, oldest first."""
    months = []
    month = until.replace(day=1)
    for _ in range(count):
        month = (month - timedelta(days=1)).replace(day=1)
        months.append(month)
    return months[::-1]


@dataclass(frozen=True)
class TeamMonth:
    month: date
    contacts: int
    csat_pct: float | None
    aht_seconds: float | None
    fcr_pct: float | None
    points: int


def team_trend(*, team: Team, months: list[date]) -> list[TeamMonth]:
    """The team's KPIs (volume-weighted) and awarded points per month. Two queries."""
    if not months:
        return []
    records = (
        KpiRecord.objects.filter(
            agent__team=team, period_start__gte=months[0], period_end__lte=next_month(months[-1])
        )
        .annotate(month=TruncMonth("period_start"))
        .values("month")
        .annotate(
            contacts=Sum("contacts_handled"),
            handle=Sum(F("talk_seconds") + F("hold_seconds") + F("after_contact_seconds")),
            answers=Sum("survey_answers"),
            satisfied=Sum("satisfied_answers"),
            issues=Sum("issues"),
            first=Sum("resolved_first_contact"),
        )
        .order_by()
    )
    by_month = {_as_date(row["month"]): row for row in records}
    points = dict(points_by_month(months=months, team=team))
    trend = []
    for month in months:
        row = by_month.get(month)
        if row is None:
            trend.append(TeamMonth(month, 0, None, None, None, points[month]))
            continue
        trend.append(
            TeamMonth(
                month,
                row["contacts"],
                100 * row["satisfied"] / row["answers"] if row["answers"] else None,
                row["handle"] / row["contacts"] if row["contacts"] else None,
                100 * row["first"] / row["issues"] if row["issues"] else None,
                points[month],
            )
        )
    return trend


def _as_date(value) -> date:
    return value.date() if hasattr(value, "date") and callable(value.date) else value
