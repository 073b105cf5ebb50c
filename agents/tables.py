"""The agents app's tables: sortable, exported to CSV (loyalty.tables.CsvExport)."""

from __future__ import annotations

import django_tables2 as tables
from django.utils import timezone
from django.utils.html import format_html

from agents.models import AwardEntry, Team


def _one_decimal(value) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _csv_number(value):
    return "" if value is None else round(value, 2)


class TeamTable(tables.Table):
    name = tables.Column(verbose_name="Team", linkify=True)
    program = tables.Column(
        verbose_name="Program", accessor="program__name", order_by=("program__name", "name")
    )
    supervisor = tables.Column(verbose_name="Team lead", order_by=("supervisor__username",))
    agent_count = tables.Column(verbose_name="Agents", attrs={"td": {"class": "num"}, "th": {"class": "num"}})

    class Meta:
        model = Team
        fields = ()
        sequence = ("name", "program", "supervisor", "agent_count")
        empty_text = "No team matches these filters."

    def render_supervisor(self, value):
        return value.get_full_name() or value.get_username()

    def value_supervisor(self, value):
        return value.get_username() if value else ""


class LeaderboardTable(tables.Table):
    """Rank, agent, team and points only: agents see the board, not each other's KPIs."""

    rank = tables.Column(attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    agent = tables.Column(
        verbose_name="Agent",
        empty_values=(),
        order_by=("user__last_name", "user__first_name", "user__username"),
    )
    team = tables.Column(verbose_name="Team", accessor="team__name", order_by=("team__name", "rank"))
    program = tables.Column(
        verbose_name="Program", accessor="team__program__name", order_by=("team__program__name", "rank")
    )
    points = tables.Column(attrs={"td": {"class": "num"}, "th": {"class": "num"}})

    class Meta:
        empty_text = "No agent on this board yet."
        row_attrs = {"id": lambda record: f"agent-{record.employee_id}"}

    def __init__(self, *args, link_agents: bool = False, me=None, **kwargs):
        self.link_agents = link_agents
        self.me = me
        super().__init__(*args, **kwargs)

    def render_agent(self, record):
        name = record.display_name
        if self.me is not None and record.pk == self.me.pk:
            return format_html("<strong>{}</strong> (you)", name)
        if self.link_agents:
            return format_html('<a href="{}">{}</a>', record.get_absolute_url(), name)
        return name

    def value_agent(self, record):
        return record.display_name


class TeamAgentTable(LeaderboardTable):
    """A team's agents for a supervisor: the board plus each KPI."""

    employee_id = tables.Column(verbose_name="Employee id")
    contacts = tables.Column(verbose_name="Contacts", accessor="kpi_contacts", attrs={"td": {"class": "num"}})
    csat = tables.Column(verbose_name="CSAT %", accessor="metric_csat", attrs={"td": {"class": "num"}})
    aht = tables.Column(verbose_name="AHT s", accessor="metric_aht", attrs={"td": {"class": "num"}})
    fcr = tables.Column(verbose_name="FCR %", accessor="metric_fcr", attrs={"td": {"class": "num"}})
    first_response = tables.Column(
        verbose_name="Ticket 1st reply s", accessor="metric_first_response", attrs={"td": {"class": "num"}}
    )
    sla = tables.Column(verbose_name="Ticket SLA %", accessor="metric_sla", attrs={"td": {"class": "num"}})
    reopen = tables.Column(verbose_name="Reopen %", accessor="metric_reopen", attrs={"td": {"class": "num"}})

    class Meta:
        exclude = ("team", "program")
        sequence = (
            "rank",
            "agent",
            "employee_id",
            "contacts",
            "csat",
            "aht",
            "fcr",
            "first_response",
            "sla",
            "reopen",
            "points",
        )
        empty_text = "No active agent in this team."

    def render_csat(self, value):
        return _one_decimal(value)

    render_aht = render_fcr = render_first_response = render_sla = render_reopen = render_csat

    def value_csat(self, value):
        return _csv_number(value)

    value_aht = value_fcr = value_first_response = value_sla = value_reopen = value_csat


class AwardEntryTable(tables.Table):
    period_start = tables.DateColumn(verbose_name="Month", format="Y-m")
    metric = tables.Column(accessor="rule__metric", verbose_name="Metric")
    kind = tables.Column()
    metric_value = tables.Column(verbose_name="Value")
    points = tables.Column()
    total_after = tables.Column(verbose_name="Total for the rule")
    reason = tables.Column(verbose_name="Why", orderable=False)
    posted_at = tables.DateTimeColumn(verbose_name="Posted", format="Y-m-d H:i")

    class Meta:
        model = AwardEntry
        fields = ()
        sequence = (
            "period_start",
            "metric",
            "kind",
            "metric_value",
            "points",
            "total_after",
            "reason",
            "posted_at",
        )
        empty_text = "No points awarded yet: months are awarded once they are over."
        orderable = False

    def render_metric(self, record):
        return record.rule.get_metric_display()

    def render_kind(self, record):
        return record.get_kind_display()

    def render_points(self, value):
        return format_html('<span class="{}">{}</span>', "danger" if value < 0 else "", f"{value:+,d}")

    def value_points(self, value):
        return value

    def value_posted_at(self, value):
        return timezone.localtime(value).isoformat()
