"""KPIs and scoring rules as SQL expressions: the one place a metric or a rule shape is defined.

Both the awards job and the leaderboards score through these expressions, so the points an
agent is awarded for a month are exactly the points the month's leaderboard shows, and a
leaderboard of any size is one query (sums per agent, points per rule, a RANK() window).

An agent's metric is computed from the sums of the counts of their KPI records in a window:
day records dated inside it, and month records whose whole month lies inside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from django.db.models import (
    Case,
    Count,
    Expression,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Floor, Greatest, Least, NullIf
from django.db.models.lookups import GreaterThanOrEqual, IsNull, LessThanOrEqual

from agents.models import TICKET_METRICS, KpiRecord, Metric, ScoringRule, Team, TicketKpiRecord

# Floors of a linear scale must not lose a point to binary rounding (29.999999 -> 29).
EPSILON = 1e-9
SUMS = {
    "contacts": "contacts_handled",
    "handle": None,  # talk + hold + after-contact work, see `_sum_fields`
    "answers": "survey_answers",
    "satisfied": "satisfied_answers",
    "issues": "issues",
    "first_contact": "resolved_first_contact",
}


def window_filter(start: date, end: date, *, prefix: str = "kpi_records__") -> Q:
    """KPI records inside [start, end): days dated in it, months wholly in it."""
    return Q(**{f"{prefix}kind": KpiRecord.Kind.DAY, f"{prefix}period_start__gte": start}) & Q(
        **{f"{prefix}period_start__lt": end}
    ) | Q(
        **{
            f"{prefix}kind": KpiRecord.Kind.MONTH,
            f"{prefix}period_start__gte": start,
            f"{prefix}period_end__lte": end,
        }
    )


def _sum(expression, condition: Q) -> Expression:
    return Coalesce(Sum(expression, filter=condition), 0)


def kpi_sums(start: date, end: date, *, prefix: str = "kpi_records__") -> dict[str, Expression]:
    """Annotations: the period's counts per agent (an AgentProfile queryset), 0 when none."""
    condition = window_filter(start, end, prefix=prefix)
    sums = {
        f"kpi_{name}": _sum(F(f"{prefix}{column}"), condition)
        for name, column in SUMS.items()
        if column is not None
    }
    sums["kpi_handle"] = _sum(
        F(f"{prefix}talk_seconds") + F(f"{prefix}hold_seconds") + F(f"{prefix}after_contact_seconds"),
        condition,
    )
    sums["kpi_count"] = Count(f"{prefix}id", filter=condition)
    return sums


def _ratio(numerator: str, denominator: str, *, scale: float = 1.0) -> Expression:
    # NULL when the denominator is 0: no surveys means no CSAT, not a CSAT of 0 %.
    return Cast(F(numerator), FloatField()) * Value(scale) / NullIf(F(denominator), 0)


def metric_expressions(*, start: date) -> dict[str, Expression]:
    """Each metric over the `kpi_sums` annotations (definitions in agents.models).

    Ticket metrics are monthly figures: they count in a window that starts on a month's first
    day (this month, last month), as that month's stored TicketKpiRecord; elsewhere they have
    no value (a rolling week cannot hold a share of a monthly average).
    """
    metrics = {
        Metric.CSAT: _ratio("kpi_satisfied", "kpi_answers", scale=100.0),
        Metric.AHT: _ratio("kpi_handle", "kpi_contacts"),
        Metric.FCR: _ratio("kpi_first_contact", "kpi_issues", scale=100.0),
        Metric.CONTACTS: Cast(F("kpi_contacts"), FloatField()),
    }
    for metric, column in TICKET_METRICS.items():
        if start.day == 1:
            month = TicketKpiRecord.objects.filter(agent=OuterRef("pk"), period_start=start)
            metrics[metric] = Subquery(month.values(column)[:1], output_field=FloatField())
        else:
            metrics[metric] = Value(None, output_field=FloatField())
    return metrics


def rule_points(rule: ScoringRule, value: Expression) -> Expression:
    """The points `rule` gives for a metric `value` (an expression; NULL scores 0)."""
    points = Value(rule.points)
    target = Value(float(rule.target))
    if rule.is_linear:
        zero_at, best_at = float(rule.zero_at), float(rule.best_at)
        low, high = sorted((zero_at, best_at))
        clamped = Greatest(Least(value, Value(high)), Value(low))
        # Nothing at the worse end, `points` at the target, more at the same rate to the better end.
        scaled = (clamped - Value(zero_at)) * Value(rule.points / (float(rule.target) - zero_at))
        raw = Floor(scaled + Value(EPSILON), output_field=FloatField())
    else:
        meets = (
            GreaterThanOrEqual(value, target)
            if rule.direction == ScoringRule.Direction.HIGHER
            else LessThanOrEqual(value, target)
        )
        raw = Case(When(meets, then=points), default=Value(0), output_field=FloatField())
    if rule.cap is not None:
        raw = Least(raw, Value(float(rule.cap)))
    # PostgreSQL's GREATEST/LEAST skip NULLs, SQLite's return NULL: decide NULL first, the same on both.
    return Case(
        When(IsNull(value, True), then=Value(0)),
        default=Cast(raw, IntegerField()),
        output_field=IntegerField(),
    )


@dataclass
class RuleSet:
    """The rule versions in force on one day, and which teams each applies to."""

    on: date
    rules: list[ScoringRule] = field(default_factory=list)
    teams_by_rule: dict[int, list[int]] = field(default_factory=dict)
    by_team: dict[int, dict[str, ScoringRule]] = field(default_factory=dict)

    def for_team(self, team_id: int | None) -> dict[str, ScoringRule]:
        return self.by_team.get(team_id, {}) if team_id is not None else {}


def rules_in_force(*, on: date, teams: Iterable[Team]) -> RuleSet:
    """For each team, per metric: its own latest version started by `on`, else its program's. 1 query."""
    teams = list(teams)
    program_ids = {team.program_id for team in teams}
    latest: dict[tuple[int, int | None, str], ScoringRule] = {}
    versions = ScoringRule.objects.filter(program_id__in=program_ids, effective_from__lte=on).order_by(
        "effective_from", "id"
    )
    for rule in versions:
        latest[(rule.program_id, rule.team_id, rule.metric)] = rule  # later versions overwrite
    ruleset = RuleSet(on=on)
    for team in teams:
        chosen = {}
        for (program_id, team_id, metric), rule in latest.items():
            if program_id != team.program_id or team_id not in (None, team.pk):
                continue
            if metric not in chosen or rule.team_id is not None:
                chosen[metric] = rule
        ruleset.by_team[team.pk] = chosen
        for rule in chosen.values():
            ruleset.teams_by_rule.setdefault(rule.pk, []).append(team.pk)
    seen = {}
    for chosen in ruleset.by_team.values():
        for rule in chosen.values():
            seen[rule.pk] = rule
    ruleset.rules = sorted(seen.values(), key=lambda rule: (rule.metric, rule.pk))
    return ruleset


def points_alias(rule: ScoringRule) -> str:
    return f"points_rule_{rule.pk}"


def scored(
    queryset: QuerySet, *, start: date, end: date, ruleset: RuleSet, team_field: str = "team_id"
) -> QuerySet:
    """AgentProfiles annotated with the window's counts, metrics, points per rule and `points`.

    `team_field` names the team whose rules apply: the current one by default; the awards pass
    the team each agent was in when the month ended (selectors.agents_with_team_at).
    """
    metrics = metric_expressions(start=start)
    queryset = queryset.annotate(**kpi_sums(start, end)).annotate(
        **{f"metric_{name}": expression for name, expression in metrics.items()}
    )
    per_rule = {
        points_alias(rule): Case(
            When(
                **{f"{team_field}__in": ruleset.teams_by_rule[rule.pk]},
                then=rule_points(rule, metrics[rule.metric]),
            ),
            default=Value(0),
            output_field=IntegerField(),
        )
        for rule in ruleset.rules
    }
    total = Value(0, output_field=IntegerField())
    for alias in per_rule:
        total = total + F(alias)
    return queryset.annotate(**per_rule).annotate(points=total)
