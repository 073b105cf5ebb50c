"""The performance pages: own data only, supervisors' teams, shared ranks, CSV, constant queries."""

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from agents import selectors, services
from agents.periods import next_month, previous_month
from tests.agents.conftest import MONTH, kpis, rule

pytestmark = pytest.mark.django_db


def _csv(response) -> list[dict]:
    return list(
        csv.DictReader(
            io.StringIO(
                b"".join(response.streaming_content).decode()
                if response.streaming
                else response.content.decode()
            )
        )
    )


@pytest.fixture
def today_rules(program_a):
    """Rules in force since long ago, so "this month" scores too."""
    return rule(
        program_a,
        metric="contacts",
        target=Decimal("10"),
        points=10,
        lower=Decimal("0"),
        upper=Decimal("100"),
    )


def test_an_agent_sees_only_their_own_performance(login, profile_a, make_agent, today_rules):
    colleague = make_agent(username="colleague")
    kpis(profile_a, timezone.localdate(), contacts_handled=20, survey_answers=7, satisfied_answers=7)
    kpis(colleague, timezone.localdate(), contacts_handled=30, survey_answers=9, satisfied_answers=3)
    response = login(profile_a.user).get(reverse("agents:my_performance"))
    assert response.status_code == 200
    assert response.context["agent"] == profile_a
    standing = response.context["standing"]
    assert {m.metric: m.value for m in standing.metrics}["csat"] == pytest.approx(100.0)
    assert standing.points == 20
    assert standing.rank == 2 and standing.team_size == 2
    # The colleague's KPIs are nowhere on the page, and their page is not open to an agent.
    assert "33.3" not in response.content.decode()
    client = login(profile_a.user)
    assert client.get(reverse("agents:agent_detail", args=[colleague.employee_id])).status_code == 403


def test_the_leaderboard_shows_agents_rank_and_points_not_kpis(login, profile_a, make_agent, today_rules):
    colleague = make_agent(username="colleague")
    kpis(colleague, timezone.localdate(), contacts_handled=30, survey_answers=9, satisfied_answers=3)
    response = login(profile_a.user).get(reverse("agents:leaderboard"))
    assert response.status_code == 200
    table = response.context["table"]
    assert [c.name for c in table.columns] == ["rank", "agent", "team", "program", "points"]
    assert [(row.record.pk, row.record.points) for row in table.rows] == [
        (colleague.pk, 30),
        (profile_a.pk, 0),
    ]


def test_ties_share_a_rank(login, profile_a, make_agent, today_rules):
    second, third = make_agent(), make_agent()
    day = timezone.localdate()
    kpis(profile_a, day, contacts_handled=50)
    kpis(second, day, contacts_handled=50)
    kpis(third, day, contacts_handled=20)
    board = selectors.leaderboard(
        period_start=day.replace(day=1), period_end=next_month(day), team=profile_a.team
    )
    assert [(row.pk, row.points, row.rank) for row in board][-1] == (third.pk, 20, 3)
    assert sorted((row.rank, row.points) for row in board) == [(1, 50), (1, 50), (3, 20)]


def test_a_supervisor_sees_only_the_teams_of_their_programs(login, supervisor, profile_a, profile_b):
    response = login(supervisor).get(reverse("agents:team_list"))
    assert [row.record for row in response.context["table"].rows] == [profile_a.team]
    assert login(supervisor).get(reverse("agents:team_detail", args=[profile_b.team_id])).status_code == 404
    assert (
        login(supervisor).get(reverse("agents:agent_detail", args=[profile_b.employee_id])).status_code == 404
    )
    board = login(supervisor).get(reverse("agents:leaderboard"), {"_export": "csv"})
    assert [(row["Agent"], row["Team"], row["Program"]) for row in _csv(board)] == [
        ("agent-a", "Team A", "Program A")
    ]


def test_a_supervisor_cannot_pick_another_programs_team_on_the_board(login, supervisor, profile_b):
    response = login(supervisor).get(reverse("agents:leaderboard"), {"team": profile_b.team_id})
    assert response.status_code == 400
    assert "team" in response.context["form"].errors
    assert list(response.context["table"].rows) == []


def test_the_team_page_lists_kpis_with_csv_and_trends(login, supervisor, profile_a, program_a):
    rule(program_a, metric="csat", target=Decimal("80"), points=100)
    last = previous_month(timezone.localdate())
    kpis(
        profile_a,
        last,
        contacts_handled=10,
        survey_answers=10,
        satisfied_answers=9,
        issues=4,
        resolved_first_contact=3,
    )
    services.awards_post(month=last)
    client = login(supervisor)
    url = reverse("agents:team_detail", args=[profile_a.team_id])
    response = client.get(url, {"period": "last_month"})
    assert response.status_code == 200
    row = next(iter(response.context["table"].rows)).record
    assert (row.points, row.metric_csat, row.metric_fcr) == (100, pytest.approx(90.0), pytest.approx(75.0))
    assert response.context["trend"][-1].points == 100
    assert response.context["trend"][-1].csat_pct == pytest.approx(90.0)
    assert "<svg" in response.content.decode()
    exported = _csv(client.get(url, {"period": "last_month", "_export": "csv"}))
    assert exported == [
        {
            "Rank": "1",
            "Agent": "agent-a",
            "Employee id": "E-A1",
            "Contacts": "10",
            "CSAT %": "90.0",
            "AHT s": "0.0",
            "FCR %": "75.0",
            "Ticket 1st reply s": "",
            "Ticket SLA %": "",
            "Reopen %": "",
            "Points": "100",
        }
    ]


def test_a_bad_period_is_a_400_not_a_500(login, supervisor, profile_a):
    client = login(supervisor)
    assert (
        client.get(reverse("agents:team_detail", args=[profile_a.team_id]), {"period": "x"}).status_code
        == 400
    )
    assert client.get(reverse("agents:leaderboard"), {"period": "x"}).status_code == 400
    assert login(profile_a.user).get(reverse("agents:my_performance"), {"period": "x"}).status_code == 400


def test_the_performance_page_shows_awards_and_the_points_chart(login, profile_a, program_a):
    rule(program_a, metric="csat", target=Decimal("80"), points=100)
    last = previous_month(timezone.localdate())
    kpis(profile_a, last, survey_answers=10, satisfied_answers=9)
    services.awards_post(month=last)
    response = login(profile_a.user).get(reverse("agents:my_performance"), {"period": "last_month"})
    assert response.context["awarded_total"] == 100
    assert response.context["points_by_month"][-1] == (last, 100)
    assert [row.record.points for row in response.context["awards"].rows] == [100]
    assert "<svg" in response.content.decode()


def _agents(make_agent, count, day):
    for n in range(count):
        agent = make_agent()
        kpis(agent, day, contacts_handled=10 + n, survey_answers=5, satisfied_answers=n % 6)


@pytest.mark.parametrize(
    ("name", "who"),
    [
        ("agents:leaderboard", "supervisor"),
        ("agents:team_list", "supervisor"),
        ("agents:team_detail", "supervisor"),
        ("agents:my_performance", "agent"),
    ],
)
def test_pages_run_a_constant_number_of_queries(
    name, who, login, supervisor, profile_a, make_agent, program_a, django_assert_max_num_queries
):
    rule(program_a, metric="csat", target=Decimal("60"), points=10)
    rule(program_a, metric="contacts", target=Decimal("12"), points=5)
    day = timezone.localdate()
    kwargs = {"pk": profile_a.team_id} if name == "agents:team_detail" else None
    client = login(supervisor if who == "supervisor" else profile_a.user)
    url = reverse(name, kwargs=kwargs)
    counts = []
    for size in (2, 12):
        _agents(make_agent, size, day)
        services.team_create(program=program_a, name=f"Extra {size}")
        with django_assert_max_num_queries(40) as queries:
            assert client.get(url).status_code == 200
            assert client.get(url, {"_export": "csv"}).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_this_month_counts_only_this_months_days(profile_a, today_rules):
    kpis(profile_a, date(2025, 2, 28), contacts_handled=40)
    kpis(profile_a, MONTH, contacts_handled=5)
    board = selectors.leaderboard(period_start=MONTH, period_end=next_month(MONTH), team=profile_a.team)
    assert board.get(pk=profile_a.pk).kpi_contacts == 5
