"""Agent performance: teams, agent profiles, KPI records, scoring rules and the award ledger.

KPI definitions (the contact-centre export gives the counts; we derive the rates so a month
made of daily rows is weighted by volume, never an average of averages):

- CSAT % = satisfied answers (4 or 5 on a 1-5 survey) / all survey answers x 100
- AHT seconds = (talk + hold + after-contact work seconds) / contacts handled
- FCR % = issues resolved on the first contact / all issues x 100
- contacts handled = contacts the agent closed in the period

From our own dispute tickets (disputes.selectors.ticket_kpis_by_agent, per calendar month in
the program's time zone, stored as TicketKpiRecord by the awards job):

- first response seconds = average time to the agent's first member-visible reply (SLA pauses
  left out), over the tickets they first answered in the month
- SLA attained % = tickets the agent closed within the resolution target / tickets they closed x 100
- reopen rate % = tickets the agent closed that were reopened since / tickets they closed x 100

A metric with no denominator in a period (no survey answered, no contact) has no value and
scores nothing, rather than counting as 0 % or 0 s.

Programs worked are NOT stored on the profile: `Program.staff` already decides which programs
a user may open (loyalty.access), so a second list could only drift from it. `programs`
reads it.
"""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from simple_history.models import HistoricalRecords

from loyalty.models import Program
from loyalty.models.core import ImmutableModel


class Team(models.Model):
    """Agents working together on one client program, led by a supervisor."""

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="agent_teams")
    name = models.CharField(max_length=80)
    supervisor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="led_agent_teams",
        help_text="The team lead (a supervisor of the program).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["program__name", "name"]
        constraints = [models.UniqueConstraint(fields=["program", "name"], name="agents_team_name_unique")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("agents:team_detail", kwargs={"pk": self.pk})


class AgentProfile(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agent_profile"
    )
    employee_id = models.CharField(max_length=32, unique=True)
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="agents",
        help_text="Scoring rules come from the team and its program; no team, no points.",
    )
    supervisor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="supervised_agents",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["employee_id"]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.employee_id})"

    def get_absolute_url(self) -> str:
        return reverse("agents:agent_detail", kwargs={"employee_id": self.employee_id})

    @property
    def display_name(self) -> str:
        return self.user.get_full_name() or self.user.get_username()

    @property
    def programs(self):
        return Program.objects.filter(staff=self.user)


class KpiRecord(models.Model):
    """An agent's contact-centre counts for one day or one month (definitions: module docstring)."""

    class Kind(models.TextChoices):
        DAY = "day", "Day"
        MONTH = "month", "Month"

    class Source(models.TextChoices):
        IMPORT = "import", "Contact-centre import"
        MANUAL = "manual", "Entered by a supervisor"
        DEMO = "demo", "Demo data"

    agent = models.ForeignKey(AgentProfile, on_delete=models.PROTECT, related_name="kpi_records")
    kind = models.CharField(max_length=5, choices=Kind.choices, default=Kind.DAY)
    period_start = models.DateField()
    period_end = models.DateField(help_text="First day after the period (exclusive).")
    contacts_handled = models.PositiveIntegerField(default=0)
    talk_seconds = models.PositiveIntegerField(default=0)
    hold_seconds = models.PositiveIntegerField(default=0)
    after_contact_seconds = models.PositiveIntegerField(default=0)
    survey_answers = models.PositiveIntegerField(default=0)
    satisfied_answers = models.PositiveIntegerField(default=0, help_text="Answers of 4 or 5 out of 5.")
    issues = models.PositiveIntegerField(default=0)
    resolved_first_contact = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.IMPORT)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-period_start", "agent_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "kind", "period_start"], name="agents_kpi_one_per_period"
            ),
            models.CheckConstraint(
                condition=Q(satisfied_answers__lte=models.F("survey_answers")),
                name="agents_kpi_satisfied_within_answers",
            ),
            models.CheckConstraint(
                condition=Q(resolved_first_contact__lte=models.F("issues")),
                name="agents_kpi_fcr_within_issues",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gt=models.F("period_start")), name="agents_kpi_period_order"
            ),
        ]
        indexes = [models.Index(fields=["period_start", "agent"])]

    def __str__(self) -> str:
        return f"{self.agent_id} {self.kind} {self.period_start}"

    def clean(self) -> None:
        if self.satisfied_answers > self.survey_answers:
            raise ValidationError({"satisfied_answers": "More satisfied answers than answers."})
        if self.resolved_first_contact > self.issues:
            raise ValidationError({"resolved_first_contact": "More first-contact resolutions than issues."})

    @property
    def csat_pct(self) -> float | None:
        return 100 * self.satisfied_answers / self.survey_answers if self.survey_answers else None

    @property
    def aht_seconds(self) -> float | None:
        handle = self.talk_seconds + self.hold_seconds + self.after_contact_seconds
        return handle / self.contacts_handled if self.contacts_handled else None

    @property
    def fcr_pct(self) -> float | None:
        return 100 * self.resolved_first_contact / self.issues if self.issues else None


class Metric(models.TextChoices):
    CSAT = "csat", "CSAT %"
    AHT = "aht", "AHT (seconds)"
    FCR = "fcr", "FCR %"
    CONTACTS = "contacts", "Contacts handled"
    FIRST_RESPONSE = "first_response", "Ticket first response (seconds)"
    SLA = "sla", "Ticket SLA attained %"
    REOPEN = "reopen", "Ticket reopen rate %"


# Metrics that come from dispute tickets, per whole month (TicketKpiRecord field per metric).
TICKET_METRICS = {
    Metric.FIRST_RESPONSE: "first_response_seconds",
    Metric.SLA: "sla_attained_pct",
    Metric.REOPEN: "reopen_rate_pct",
}


class TicketKpiRecord(models.Model):
    """An agent's dispute-ticket KPIs for one month, as the disputes app computed them.

    Written by `agents.services.ticket_kpis_sync` (the awards job runs it for the month it
    awards, and for the month under way so the live boards have it); a later sync of the same
    month replaces the values (history keeps the old ones).
    """

    agent = models.ForeignKey(AgentProfile, on_delete=models.PROTECT, related_name="ticket_kpis")
    period_start = models.DateField(help_text="The month (its first day).")
    first_response_seconds = models.FloatField(null=True, blank=True)
    sla_attained_pct = models.FloatField(null=True, blank=True)
    reopen_rate_pct = models.FloatField(null=True, blank=True)
    resolved = models.PositiveIntegerField(default=0, help_text="Tickets the agent closed in the month.")
    synced_at = models.DateTimeField()

    history = HistoricalRecords()

    class Meta:
        ordering = ["-period_start", "agent_id"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "period_start"], name="agents_ticket_kpi_one_per_month")
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} tickets {self.period_start:%Y-%m}"


class ScoringRule(models.Model):
    """How one metric turns into points for a program (or one team of it), from a period on.

    Shapes: a threshold (meet `target`, get `points`); with `lower` and `upper`, a linear scale
    (nothing at the worse end, `points` at the target, more at the same rate up to the better
    end); `cap` bounds the result. A change is a new row with a later `effective_from`; the
    awards job uses the row in force on the first day of the period it scores.
    """

    class Direction(models.TextChoices):
        HIGHER = "higher", "Higher is better"
        LOWER = "lower", "Lower is better"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="agent_scoring_rules")
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="scoring_rules",
        help_text="Empty: every team of the program (a team's own rule for the metric wins).",
    )
    metric = models.CharField(max_length=20, choices=Metric.choices)
    direction = models.CharField(max_length=6, choices=Direction.choices, default=Direction.HIGHER)
    target = models.DecimalField(max_digits=10, decimal_places=2)
    points = models.PositiveIntegerField(help_text="Points for meeting the target.")
    lower = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="Linear scale: lower threshold."
    )
    upper = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="Linear scale: upper threshold."
    )
    cap = models.PositiveIntegerField(null=True, blank=True, help_text="At most this many points.")
    effective_from = models.DateField(help_text="First day of the first month this version scores.")
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["program__name", "metric", "-effective_from"]
        constraints = [
            # One version per start date, for the program-wide rule and for each team's own.
            models.UniqueConstraint(
                fields=["program", "metric", "effective_from"],
                condition=Q(team__isnull=True),
                name="agents_rule_program_version_unique",
            ),
            models.UniqueConstraint(
                fields=["team", "metric", "effective_from"],
                condition=Q(team__isnull=False),
                name="agents_rule_team_version_unique",
            ),
            models.CheckConstraint(
                condition=Q(lower__isnull=True, upper__isnull=True)
                | Q(lower__isnull=False, upper__isnull=False, lower__lt=models.F("upper")),
                name="agents_rule_scale_bounds",
            ),
        ]

    def __str__(self) -> str:
        scope = self.team.name if self.team_id else self.program.name
        return f"{self.get_metric_display()} ({scope}, from {self.effective_from:%Y-%m})"

    @property
    def is_linear(self) -> bool:
        return self.lower is not None and self.upper is not None

    @property
    def zero_at(self):
        """The worse end of the scale, where the rule gives nothing."""
        return self.lower if self.direction == self.Direction.HIGHER else self.upper

    @property
    def best_at(self):
        return self.upper if self.direction == self.Direction.HIGHER else self.lower

    @property
    def shape(self) -> str:
        return "linear" if self.is_linear else "threshold"

    def clean(self) -> None:
        errors = {}
        if self.effective_from and self.effective_from.day != 1:
            errors["effective_from"] = "Rules change from the first day of a month."
        if (self.lower is None) != (self.upper is None):
            errors["upper"] = "A linear scale needs both a lower and an upper threshold."
        elif self.is_linear:
            if self.lower >= self.upper:
                errors["upper"] = "The upper threshold must be above the lower one."
            elif not self.lower <= self.target <= self.upper or self.target == self.zero_at:
                errors["target"] = "The target must lie inside the scale, beyond its worse end."
        if self.team_id and self.program_id and self.team.program_id != self.program_id:
            errors["team"] = "Choose a team of the rule's program."
        if errors:
            raise ValidationError(errors)


def first_of_month(day: date) -> date:
    return day.replace(day=1)


class AwardEntry(ImmutableModel):
    """Performance points for one agent, one month, one rule: never changed, only added to.

    The same immutability as the member ledger (loyalty.models.core.ImmutableModel, and on
    PostgreSQL the loyalty_refuse_change() trigger, see migration 0002). A rerun of the awards
    job posts nothing; a late KPI correction posts the difference as the next `seq`.
    """

    class Kind(models.TextChoices):
        AWARD = "award", "Award"
        CORRECTION = "correction", "Correction"

    agent = models.ForeignKey(AgentProfile, on_delete=models.PROTECT, related_name="awards")
    team = models.ForeignKey(Team, null=True, on_delete=models.PROTECT, related_name="+")
    period_start = models.DateField(help_text="The month scored (its first day).")
    rule = models.ForeignKey(ScoringRule, on_delete=models.PROTECT, related_name="awards")
    seq = models.PositiveSmallIntegerField(help_text="1 for the award, then one per correction.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    points = models.IntegerField(help_text="Signed: a correction may take points back.")
    total_after = models.IntegerField(help_text="The agent's points for this rule and month after it.")
    metric_value = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    idempotency_key = models.CharField(max_length=120, unique=True)
    reason = models.CharField(max_length=300)
    actor_label = models.CharField(max_length=120)
    posted_at = models.DateTimeField()

    class Meta:
        ordering = ["-period_start", "agent_id", "rule_id", "seq"]
        verbose_name_plural = "award entries"
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "period_start", "rule", "seq"], name="agents_award_one_per_seq"
            )
        ]
        indexes = [models.Index(fields=["period_start", "agent"])]

    def __str__(self) -> str:
        return f"{self.idempotency_key}: {self.points:+d}"
