"""Writes for the agents app: teams, profiles, KPI records, scoring rules and the monthly awards."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Sum
from django.utils import timezone
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from agents import scoring, selectors
from agents.models import AgentProfile, AwardEntry, KpiRecord, ScoringRule, Team, TicketKpiRecord
from agents.periods import month_closes_at, month_start, next_month, previous_month
from loyalty.access import has_role
from loyalty.audit import current_label
from loyalty.errors import ApplicationError
from loyalty.models import Program
from loyalty.roles import Role

KPI_COUNTS = (
    "contacts_handled",
    "talk_seconds",
    "hold_seconds",
    "after_contact_seconds",
    "survey_answers",
    "satisfied_answers",
    "issues",
    "resolved_first_contact",
)


def _full_clean(obj, **kwargs) -> None:
    try:
        obj.full_clean(**kwargs)
    except ValidationError as error:
        field, messages = next(iter(error.message_dict.items()))
        raise ApplicationError(messages[0], field=None if field == "__all__" else field) from error


def team_create(*, program: Program, name: str, supervisor=None) -> Team:
    team = Team(program=program, name=name, supervisor=supervisor)
    _full_clean(team)
    team.save()
    return team


def agent_profile_check(*, user, team: Team | None) -> None:
    """A profile belongs to back-office staff who work on their team's program (Program.staff)."""
    if not has_role(user, Role.AGENT):
        raise ApplicationError("Only back-office staff can have an agent profile.", field="user")
    if team is not None and not team.program.staff.filter(pk=user.pk).exists():
        raise ApplicationError(f"{user} does not work on {team.program}; assign them first.", field="team")


def agent_profile_create(
    *, user, employee_id: str, team: Team | None = None, supervisor=None
) -> AgentProfile:
    """A profile for a back-office user who works on the team's program (Program.staff)."""
    agent_profile_check(user=user, team=team)
    profile = AgentProfile(user=user, employee_id=employee_id, team=team, supervisor=supervisor)
    _full_clean(profile)
    profile.save()
    return profile


@dataclass(frozen=True)
class KpiInput:
    """One agent's counts for a day or a month (the fields of KPI_COUNTS; missing ones are 0)."""

    agent: AgentProfile
    kind: str
    period_start: date
    counts: dict[str, int]


@dataclass
class KpiUpsertResult:
    created: int = 0
    changed: int = 0
    unchanged: int = 0
    records: list[KpiRecord | None] = None  # per input, None when refused
    errors: dict[int, ApplicationError] = None  # input index -> why it was refused


def kpi_records_upsert(*, inputs: list[KpiInput], source: str = KpiRecord.Source.IMPORT) -> KpiUpsertResult:
    """Create or correct KPI records in bulk: three queries and two bulk writes, any number of rows.

    A record saying nothing new is left alone (no empty history row). A correction of a closed
    month is picked up by the next awards run, which posts the difference. Refused inputs
    (bad kind, counts that do not add up, a month that already has the other kind of record:
    its sums would count twice) are reported by index and change nothing.
    """
    result = KpiUpsertResult(records=[None] * len(inputs), errors={})
    wanted: dict[tuple[int, str, date], tuple[int, KpiInput, date]] = {}
    for index, item in enumerate(inputs):
        unknown = set(item.counts) - set(KPI_COUNTS)
        if unknown:
            result.errors[index] = ApplicationError(f"Unknown KPI fields: {', '.join(sorted(unknown))}.")
            continue
        if item.kind == KpiRecord.Kind.MONTH:
            start, end = month_start(item.period_start), next_month(item.period_start)
        elif item.kind == KpiRecord.Kind.DAY:
            start, end = item.period_start, item.period_start + timedelta(days=1)
        else:
            result.errors[index] = ApplicationError(f"Unknown period kind {item.kind!r}.", field="kind")
            continue
        wanted[(item.agent.pk, item.kind, start)] = (index, item, end)
    if not wanted:
        return result
    agent_ids = {agent_id for agent_id, _, _ in wanted}
    months = {month_start(start) for _, _, start in wanted}
    with transaction.atomic():
        existing = {
            (record.agent_id, record.kind, record.period_start): record
            for record in KpiRecord.objects.select_for_update().filter(
                agent_id__in=agent_ids,
                period_start__gte=min(months),
                period_start__lt=next_month(max(months)),
            )
        }
        kinds_by_month: dict[tuple[int, date], set[str]] = defaultdict(set)
        for agent_id, kind, start in [*existing, *wanted]:
            kinds_by_month[(agent_id, month_start(start))].add(kind)
        creates, updates = [], []
        for (agent_id, kind, start), (index, item, end) in wanted.items():
            if len(kinds_by_month[(agent_id, month_start(start))]) > 1:
                result.errors[index] = ApplicationError(
                    f"{item.agent.employee_id} would have both day and month records for {start:%Y-%m}; "
                    "send one kind per month.",
                    field="kind",
                )
                continue
            record = existing.get((agent_id, kind, start))
            values = {name: item.counts.get(name, 0) for name in KPI_COUNTS}
            if record is not None and all(getattr(record, n) == v for n, v in values.items()):
                result.unchanged += 1
                result.records[index] = record
                continue
            if record is None:
                record = KpiRecord(agent_id=agent_id, kind=kind, period_start=start, period_end=end)
            for name, value in values.items():
                setattr(record, name, value)
            record.source = source
            try:
                record.full_clean(validate_unique=False, validate_constraints=False, exclude=["agent"])
            except ValidationError as error:
                result.errors[index] = ApplicationError(
                    "; ".join(m for ms in error.message_dict.values() for m in ms)
                )
                continue
            (updates if record.pk else creates).append(record)
            result.records[index] = record
        # Through simple-history, so every creation and correction is in the record's history;
        # its bulk path sends no signal, so the acting job or import is passed on here.
        reason = (current_label() or "")[:100]
        if creates:
            bulk_create_with_history(creates, KpiRecord, batch_size=500, default_change_reason=reason)
        if updates:
            for record in updates:
                record.updated_at = timezone.now()
            bulk_update_with_history(
                updates,
                KpiRecord,
                [*KPI_COUNTS, "source", "updated_at"],
                batch_size=500,
                default_change_reason=reason,
            )
    result.created, result.changed = len(creates), len(updates)
    return result


def kpi_record_upsert(
    *, agent: AgentProfile, kind: str, period_start: date, source: str = KpiRecord.Source.IMPORT, **counts
) -> tuple[KpiRecord, bool]:
    """One record (see kpi_records_upsert); (record, changed). Refused: ApplicationError."""
    result = kpi_records_upsert(
        inputs=[KpiInput(agent=agent, kind=kind, period_start=period_start, counts=counts)], source=source
    )
    if 0 in result.errors:
        raise result.errors[0]
    return result.records[0], bool(result.created or result.changed)


def earliest_rule_start(today: date | None = None) -> date:
    """A rule change applies from the next month: the period being worked keeps its rules."""
    return next_month(today or timezone.localdate())


def scoring_rule_create(
    *,
    program: Program,
    metric: str,
    target: Decimal,
    points: int,
    direction: str = ScoringRule.Direction.HIGHER,
    team: Team | None = None,
    lower: Decimal | None = None,
    upper: Decimal | None = None,
    cap: int | None = None,
    effective_from: date | None = None,
    today: date | None = None,
) -> ScoringRule:
    """A new rule version for a program (or one of its teams), from next month by default.

    Earlier versions stay as they were (and in history): past months keep the rules they
    were worked under, so rerunning an old month's awards never changes its result.
    """
    earliest = earliest_rule_start(today)
    effective_from = effective_from or earliest
    if effective_from < earliest:
        raise ApplicationError(
            f"A rule change applies from {earliest:%Y-%m} at the earliest.", field="effective_from"
        )
    rule = ScoringRule(
        program=program,
        team=team,
        metric=metric,
        direction=direction,
        target=target,
        points=points,
        lower=lower,
        upper=upper,
        cap=cap,
        effective_from=effective_from,
    )
    _full_clean(rule)
    rule.save()
    return rule


@dataclass
class AwardReport:
    month: date
    agents: int = 0
    entries: int = 0
    corrections: int = 0
    points: int = 0
    unchanged: int = 0

    def summary(self) -> dict:
        return {
            "period": f"{self.month:%Y-%m}",
            "agents": self.agents,
            "entries": self.entries,
            "corrections": self.corrections,
            "points": self.points,
            "unchanged": self.unchanged,
        }


def ticket_kpis_sync(*, month: date, now: datetime | None = None) -> int:
    """Store each agent's dispute-ticket KPIs for a month (up to `now` if it is under way).

    Per program with teams, the month in that program's time zone, tickets of that program
    only (an agent is scored on their team's program). Values that did not change are left
    alone; returns how many records were created or changed. Two queries per program for
    the tickets, then one read and two bulk writes.
    """
    from disputes.selectors import ticket_kpis_by_agent

    now = now or timezone.now()
    month = month_start(month)
    found: dict[int, object] = {}  # agent profile id -> TicketKpis
    for program in Program.objects.filter(agent_teams__isnull=False).distinct():
        start = datetime.combine(month, time.min, tzinfo=program.tz)
        end = min(month_closes_at(month, program.tz), now)
        if end <= start:
            continue
        kpis = ticket_kpis_by_agent(start=start, end=end, program_ids=[program.pk])
        for profile_id, user_id in AgentProfile.objects.filter(
            team__program=program, user_id__in=list(kpis)
        ).values_list("pk", "user_id"):
            found[profile_id] = kpis[user_id]
    existing = {
        record.agent_id: record
        for record in TicketKpiRecord.objects.filter(period_start=month, agent_id__in=list(found))
    }
    creates, updates = [], []
    for agent_id, kpis in found.items():
        values = {
            "first_response_seconds": kpis.first_response_seconds,
            "sla_attained_pct": kpis.sla_attained_pct,
            "reopen_rate_pct": kpis.reopen_rate_pct,
            "resolved": kpis.resolved,
        }
        record = existing.get(agent_id)
        if record is not None and all(getattr(record, k) == v for k, v in values.items()):
            continue
        if record is None:
            record = TicketKpiRecord(agent_id=agent_id, period_start=month)
            creates.append(record)
        else:
            updates.append(record)
        for name, value in values.items():
            setattr(record, name, value)
        record.synced_at = now
    reason = (current_label() or "")[:100]
    with transaction.atomic():
        if creates:
            bulk_create_with_history(creates, TicketKpiRecord, batch_size=500, default_change_reason=reason)
        if updates:
            bulk_update_with_history(
                updates,
                TicketKpiRecord,
                ["first_response_seconds", "sla_attained_pct", "reopen_rate_pct", "resolved", "synced_at"],
                batch_size=500,
                default_change_reason=reason,
            )
    return len(creates) + len(updates)


def awards_run_scheduled(*, now: datetime | None = None) -> AwardReport:
    """The daily job: award last month (posting only what changed) and refresh this month's
    ticket KPIs, so the live boards score tickets too."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    ticket_kpis_sync(month=today, now=now)
    return awards_post(month=previous_month(today), now=now)


def month_end_moment(*, month: date) -> datetime:
    """When the month is over in every program that has a team (the latest midnight decides)."""
    programs = Program.objects.filter(agent_teams__isnull=False).distinct()
    zones = [program.tz for program in programs] or [timezone.get_default_timezone()]
    return max(month_closes_at(month, tz) for tz in zones)


def month_is_closed(*, month: date, now: datetime | None = None) -> bool:
    return (now or timezone.now()) >= month_end_moment(month=month)


def awards_post(*, month: date, now: datetime | None = None) -> AwardReport:
    """Award each agent's points for a closed month; safe to rerun any number of times.

    For every (agent, rule) the month's score is compared with what the award ledger already
    holds; a difference is posted as the next entry (seq 1 is the award, later ones are
    corrections), so a rerun posts nothing and a late KPI correction posts the difference.
    Entries are keyed `agents:<month>:<agent>:<rule>:<seq>`: two racing runs cannot both
    post the same step (the unique key refuses the second, which then finds it done).
    """
    now = now or timezone.now()
    month = month_start(month)
    if not month_is_closed(month=month, now=now):
        raise ApplicationError(
            f"{month:%Y-%m} is not over yet; award it once it has closed.", code="open_period"
        )
    # The tickets' figures for the month, as they stand now: a ticket reopened since the last
    # run changes them, and the difference is posted like any other correction.
    ticket_kpis_sync(month=month, now=now)
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _post_month(month=month, now=now)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _post_month(*, month: date, now: datetime) -> AwardReport:
    end = next_month(month)
    teams = Team.objects.all()
    ruleset = scoring.rules_in_force(on=month, teams=teams)
    # The rules of the team each agent was in when the month ended: moving an agent later
    # must not rescore (and "correct") months already awarded.
    rows = scoring.scored(
        selectors.agents_with_team_at(month_end_moment(month=month)),
        start=month,
        end=end,
        ruleset=ruleset,
        team_field="team_then",
    )
    held: dict[int, dict[int, tuple[int, int]]] = defaultdict(dict)  # agent -> rule -> (total, last seq)
    for line in (
        AwardEntry.objects.filter(period_start=month)
        .values("agent_id", "rule_id")
        .annotate(total=Sum("points"), last=Max("seq"))
        .order_by()
    ):
        held[line["agent_id"]][line["rule_id"]] = (line["total"], line["last"])
    rules = {rule.pk: rule for rule in ruleset.rules}
    missing = {rule_id for by_rule in held.values() for rule_id in by_rule} - set(rules)
    rules.update(ScoringRule.objects.in_bulk(missing))
    label = current_label() or "job:agents.award_points"
    report = AwardReport(month=month)
    entries = []
    for row in rows:
        wanted = {
            rule.pk: (getattr(row, scoring.points_alias(rule)), getattr(row, f"metric_{rule.metric}"))
            for rule in ruleset.rules
            if row.team_then in ruleset.teams_by_rule[rule.pk]
        }
        if not row.kpi_count:
            wanted = {}  # no KPIs this month: nothing to award (earlier awards are taken back below)
        mine = held.get(row.pk, {})
        for rule_id in mine.keys() - wanted.keys():
            wanted[rule_id] = (0, None)  # no longer applies: the difference takes its points back
        posted = False
        for rule_id, (points, value) in wanted.items():
            total, last = mine.get(rule_id, (0, 0))
            if last and points == total:
                report.unchanged += 1
                continue
            seq = last + 1
            rule = rules[rule_id]
            kind = AwardEntry.Kind.AWARD if seq == 1 else AwardEntry.Kind.CORRECTION
            entries.append(
                AwardEntry(
                    agent_id=row.pk,
                    team_id=row.team_then,
                    period_start=month,
                    rule=rule,
                    seq=seq,
                    kind=kind,
                    points=points - total,
                    total_after=points,
                    metric_value=None if value is None else Decimal(f"{value:.2f}"),
                    idempotency_key=f"agents:{month:%Y-%m}:{row.pk}:{rule_id}:{seq}",
                    reason=_reason(rule, value, points, kind),
                    actor_label=label,
                    posted_at=now,
                )
            )
            report.points += points - total
            report.corrections += kind == AwardEntry.Kind.CORRECTION
            posted = True
        report.agents += posted
    AwardEntry.objects.bulk_create(entries, batch_size=500)
    report.entries = len(entries)
    return report


def _reason(rule: ScoringRule, value, points: int, kind: str) -> str:
    shown = "no data" if value is None else f"{value:.2f}"
    verb = "Corrected to" if kind == AwardEntry.Kind.CORRECTION else "Scored"
    return (
        f"{verb} {points} points: {rule.get_metric_display()} {shown} (target {rule.target}, {rule.shape})"[
            :300
        ]
    )
