"""The agents part of seed_demo: teams, agents, six months of KPIs and awards; once only."""

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Sum

from agents import demo, selectors
from agents.models import AgentProfile, AwardEntry, KpiRecord, ScoringRule, Team
from agents.periods import next_month

pytestmark = pytest.mark.django_db


def _counts():
    return tuple(
        model.objects.count()
        for model in (Team, AgentProfile, KpiRecord, ScoringRule, AwardEntry, get_user_model())
    )


def test_it_seeds_teams_kpis_and_awards_once(program_a, program_b, supervisor):
    lines = []
    programs = {"bean-there": program_a, "skyhigh": program_b}
    demo.seed(programs=programs, months=12, log=lines.append)
    assert Team.objects.count() == 3
    assert AgentProfile.objects.count() == 11
    assert KpiRecord.objects.filter(source="demo").count() > 11 * 6 * 18
    months = set(AwardEntry.objects.values_list("period_start", flat=True))
    assert len(months) == 6
    assert ScoringRule.objects.filter(team__name="Sky Nights").exists()
    # The awards equal what each month's board shows (the same scoring).
    month = max(months)
    board = selectors.leaderboard(
        period_start=month, period_end=next_month(month), program_ids=[program_b.pk]
    )
    awarded = {
        row["agent"]: row["total"]
        for row in AwardEntry.objects.filter(period_start=month, team__program=program_b)
        .values("agent")
        .annotate(total=Sum("points"))
    }
    assert {row.pk: row.points for row in board} == awarded
    before = _counts()
    demo.seed(programs=programs, months=12, log=lines.append)
    assert _counts() == before
    assert lines[-1] == "Agent performance: already seeded, left unchanged."
