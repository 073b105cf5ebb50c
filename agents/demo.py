"""The agents app's part of seed_demo, called after the programs and members exist.

Three teams (one at Bean There, two at SkyHigh), the demo's agents plus a few more, the
programs' scoring rules (one changed this month, so rule history shows), six closed months
of daily KPIs plus this month so far, and the awards of the closed months, posted by the
same service the monthly job runs. Deterministic (random.Random) and idempotent: a second
run finds the KPIs in place and changes nothing. Everything is written in bulk.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.utils import timezone

from agents import services
from agents.models import AgentProfile, KpiRecord, Metric, ScoringRule, Team
from agents.periods import next_month, previous_month
from loyalty.audit import acting_as
from loyalty.roles import Role
from loyalty.services import staff_user_create

User = get_user_model()

KPI_MONTHS = 6
# program slug -> teams: (name, [(username, employee id), ...]); "agent" and "agent.sky" come
# from the loyalty demo, the others are made here with the demo password.
TEAMS = {
    "bean-there": [
        (
            "Coffee Crew",
            [
                ("agent", "BT-001"),
                ("agent.latte", "BT-002"),
                ("agent.mocha", "BT-003"),
                ("agent.chai", "BT-004"),
                ("agent.flat", "BT-005"),
            ],
        )
    ],
    "skyhigh": [
        ("Sky Desk", [("agent.sky", "SH-001"), ("agent.jet", "SH-002"), ("agent.wing", "SH-003")]),
        ("Sky Nights", [("agent.moon", "SH-101"), ("agent.star", "SH-102"), ("agent.comet", "SH-103")]),
    ],
}
D = Decimal


def _rules(program, teams: dict[str, Team], *, first_month: date) -> None:
    """The rules the KPIs are scored by, in force from the first demo month."""
    made_in = first_month - timedelta(days=1)  # a change applies from the next month

    def add(**fields):
        services.scoring_rule_create(program=program, today=made_in, effective_from=first_month, **fields)

    add(metric=Metric.CSAT, target=D("85"), points=100)
    add(
        metric=Metric.AHT,
        direction=ScoringRule.Direction.LOWER,
        target=D("300"),
        points=60,
        lower=D("240"),
        upper=D("420"),
    )
    add(metric=Metric.FCR, target=D("75"), points=50, lower=D("60"), upper=D("90"), cap=70)
    add(metric=Metric.CONTACTS, target=D("600"), points=40)
    # From the dispute tickets the disputes demo seeded (agents who closed some).
    add(metric=Metric.SLA, target=D("90"), points=30)
    if "Sky Nights" in teams:
        # Night shift takes fewer calls: its own contacts target replaces the program's.
        add(team=teams["Sky Nights"], metric=Metric.CONTACTS, target=D("450"), points=40)


def seed(*, programs, months: int, log) -> None:
    """Add this app's demo data to the seeded programs; a second run changes nothing."""
    if KpiRecord.objects.filter(source=KpiRecord.Source.DEMO).exists():
        log("Agent performance: already seeded, left unchanged.")
        return
    from loyalty.demo import DEMO_PASSWORD

    rng = random.Random("agents-demo")
    today = timezone.localdate()
    this_month = today.replace(day=1)
    first_month = this_month
    for _ in range(min(months, KPI_MONTHS)):
        first_month = previous_month(first_month)
    supervisor = User.objects.filter(username="supervisor").first()
    with acting_as("job:seed_demo"):
        agents = []
        for slug, teams in TEAMS.items():
            program = programs[slug]
            made = {}
            for name, members in teams:
                team = Team.objects.filter(program=program, name=name).first() or services.team_create(
                    program=program, name=name, supervisor=supervisor
                )
                made[name] = team
                for username, employee_id in members:
                    user = User.objects.filter(username=username).first() or staff_user_create(
                        username=username,
                        role=Role.AGENT,
                        password=DEMO_PASSWORD,
                        programs=[program],
                        email=f"{username}@demo.example",
                        first_name=username.split(".")[-1].title(),
                        last_name="Agent",
                    )
                    profile = AgentProfile.objects.filter(user=user).first() or services.agent_profile_create(
                        user=user, employee_id=employee_id, team=team, supervisor=supervisor
                    )
                    agents.append(profile)
            if not ScoringRule.objects.filter(program=program).exists():
                _rules(program, made, first_month=first_month)
        # A rule changed last month: from this month on, Bean There pays more for CSAT.
        bean = programs["bean-there"]
        if not ScoringRule.objects.filter(program=bean, effective_from=this_month).exists():
            services.scoring_rule_create(
                program=bean,
                metric=Metric.CSAT,
                target=D("88"),
                points=120,
                today=previous_month(this_month),
            )
        inputs = [
            services.KpiInput(agent=agent, kind=KpiRecord.Kind.DAY, period_start=day, counts=counts)
            for agent in agents
            for day, counts in _days(rng, first_month=first_month, today=today)
        ]
        services.kpi_records_upsert(inputs=inputs, source=KpiRecord.Source.DEMO)
        month, awarded = first_month, 0
        while month < this_month:
            awarded += services.awards_post(month=month).points
            month = next_month(month)
    log(
        f"Agent performance: {len(agents)} agents in {sum(len(t) for t in TEAMS.values())} teams, "
        f"{len(inputs)} daily KPI records, {awarded} points awarded over {KPI_MONTHS} months "
        f"(agent logins such as agent.latte and agent.jet use the demo password)."
    )


def _days(rng: random.Random, *, first_month: date, today: date):
    """One agent's weekdays from `first_month` to yesterday: a steady level with daily noise."""
    level = {
        "contacts": rng.randint(22, 40),
        "handle": rng.randint(250, 400),
        "satisfied": rng.uniform(0.72, 0.95),
        "first": rng.uniform(0.6, 0.88),
    }
    day = first_month
    while day < today:
        if day.weekday() < 5:
            contacts = max(1, int(rng.gauss(level["contacts"], 4)))
            handle = max(120, int(rng.gauss(level["handle"], 30)))
            answers = rng.randint(contacts // 5, contacts // 3)
            issues = contacts - rng.randint(0, contacts // 6)
            yield (
                day,
                {
                    "contacts_handled": contacts,
                    "talk_seconds": int(handle * contacts * 0.7),
                    "hold_seconds": int(handle * contacts * 0.1),
                    "after_contact_seconds": int(handle * contacts * 0.2),
                    "survey_answers": answers,
                    "satisfied_answers": sum(rng.random() < level["satisfied"] for _ in range(answers)),
                    "issues": issues,
                    "resolved_first_contact": sum(rng.random() < level["first"] for _ in range(issues)),
                },
            )
        day += timedelta(days=1)
