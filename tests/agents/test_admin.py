"""The agents admin: scoped to the supervisor's programs; rules only added; awards read-only."""

import pytest
from django.urls import reverse

from agents.models import AgentProfile, AwardEntry, KpiRecord, ScoringRule, Team
from agents.services import awards_post, earliest_rule_start
from tests.agents.conftest import MONTH, kpis, rule

pytestmark = pytest.mark.django_db


def _url(model, action="changelist", *args):
    return reverse(f"admin:agents_{model._meta.model_name}_{action}", args=args)


def test_a_supervisor_sees_the_agents_admin_of_their_programs_only(login, supervisor, profile_a, profile_b):
    client = login(supervisor)
    for model in (Team, AgentProfile, KpiRecord, ScoringRule, AwardEntry):
        assert client.get(_url(model)).status_code == 200
    page = client.get(_url(Team))
    assert list(page.context["cl"].result_list) == [profile_a.team]
    assert client.get(_url(Team, "change", profile_b.team_id)).status_code == 404
    assert client.get(_url(AgentProfile, "history", profile_a.pk)).status_code == 200
    assert client.get(_url(AgentProfile, "history", profile_b.pk)).status_code == 404


def test_an_agent_has_no_agents_admin(login, agent_a, profile_a):
    assert login(agent_a).get(_url(AgentProfile)).status_code == 403


def test_a_rule_version_is_never_edited_and_a_new_one_starts_next_month(login, supervisor, program_a):
    old = rule(program_a)
    client = login(supervisor)
    response = client.post(_url(ScoringRule, "change", old.pk), {"points": 5})
    assert response.status_code == 403
    data = {"program": program_a.pk, "metric": "csat", "direction": "higher", "target": "80", "points": 10}
    refused = client.post(_url(ScoringRule, "add"), {**data, "effective_from": "2020-01-01"})
    assert refused.status_code == 200 and "effective_from" in refused.context["adminform"].form.errors
    start = earliest_rule_start()
    assert (
        client.post(_url(ScoringRule, "add"), {**data, "effective_from": start.isoformat()}).status_code
        == 302
    )
    assert ScoringRule.objects.filter(effective_from=start).count() == 1
    old.refresh_from_db()
    assert old.points == 100


def test_a_profile_needs_a_user_who_works_on_the_teams_program(login, supervisor, agent_b, team_a):
    response = login(supervisor).post(
        _url(AgentProfile, "add"),
        {"user": agent_b.pk, "employee_id": "X-1", "team": team_a.pk, "is_active": "on"},
    )
    assert response.status_code == 200
    assert "team" in response.context["adminform"].form.errors
    assert not AgentProfile.objects.filter(employee_id="X-1").exists()


def test_kpi_records_and_awards_are_read_only_in_the_admin(login, supervisor, profile_a, program_a):
    rule(program_a)
    record = kpis(profile_a, MONTH, survey_answers=10, satisfied_answers=10)
    awards_post(month=MONTH)
    client = login(supervisor)
    client.post(_url(KpiRecord, "change", record.pk), {"contacts_handled": 99})
    record.refresh_from_db()
    assert record.contacts_handled == 0
    entry = AwardEntry.objects.get()
    assert client.post(_url(AwardEntry, "delete", entry.pk), {"post": "yes"}).status_code == 403
    assert AwardEntry.objects.filter(pk=entry.pk).exists()
