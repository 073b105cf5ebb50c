"""The agents app's cast on top of the root one: a team per program, a profile per agent."""

from datetime import date
from decimal import Decimal

import pytest

from agents import services
from agents.models import KpiRecord, ScoringRule
from loyalty.roles import Role
from loyalty.services import staff_user_create

PASSWORD = "correct-horse-battery"
# The months the tests score: closed long ago, so "the month is over" never depends on today.
MONTH = date(2025, 3, 1)


@pytest.fixture
def team_a(program_a, supervisor):
    return services.team_create(program=program_a, name="Team A", supervisor=supervisor)


@pytest.fixture
def team_b(program_b):
    return services.team_create(program=program_b, name="Team B")


@pytest.fixture
def profile_a(agent_a, team_a, supervisor):
    return services.agent_profile_create(user=agent_a, employee_id="E-A1", team=team_a, supervisor=supervisor)


@pytest.fixture
def profile_b(agent_b, team_b):
    return services.agent_profile_create(user=agent_b, employee_id="E-B1", team=team_b)


@pytest.fixture
def make_agent(program_a, team_a):
    """Another agent of program A's team (or a given team)."""
    counter = iter(range(2, 10_000))

    def _make(*, team=None, username=None):
        team = team or team_a
        n = next(counter)
        user = staff_user_create(
            username=username or f"agent-{n}", role=Role.AGENT, password=PASSWORD, programs=[team.program]
        )
        return services.agent_profile_create(user=user, employee_id=f"E-{n}", team=team)

    return _make


def rule(program, *, today=date(2024, 12, 15), **fields):
    """A rule in force from January 2025 (made "in December 2024", so it is a next-month change)."""
    defaults = {"metric": "csat", "target": Decimal("85"), "points": 100}
    return services.scoring_rule_create(program=program, today=today, **{**defaults, **fields})


def kpis(agent, day=MONTH, *, kind=KpiRecord.Kind.DAY, **counts):
    record, _ = services.kpi_record_upsert(agent=agent, kind=kind, period_start=day, **counts)
    return record


LOWER = ScoringRule.Direction.LOWER
