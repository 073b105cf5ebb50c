"""The report pages: chart + table + CSV, scoped to the supervisor's programs, bad input is a 400,
and a fixed number of queries whatever the data size."""

import csv
import io
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents.supervisor.reports import REPORTS
from loyalty import ledger
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry
from loyalty.services import member_create
from tests.supervisor.conftest import at

PERIOD = {"start": "2025-01", "end": "2025-03"}


def url(slug: str) -> str:
    return reverse("supervisor:report", args=[slug])


def _grow(program, *, members: int, entries_each: int, start: int = 0):
    for i in range(start, start + members):
        member = member_create(
            program=program, first_name=f"M{i}", last_name="Load", email=f"r{i}@example.com"
        )
        for n in range(entries_each):
            ledger.credit(
                account=member.account,
                points=10 + n,
                reason="Purchase",
                actor=Actor.job("load"),
                idempotency_key=f"r-{i}-{n}",
                source=LedgerEntry.Source.API,
                now=at(2025, 1 + n % 3, 10),
                available_from=at(2025, 1, 1),
                expires_at=None,
            )


@pytest.mark.parametrize("slug", list(REPORTS))
def test_each_report_runs_a_fixed_number_of_queries(login, supervisor, program_a, slug):
    client = login(supervisor)
    _grow(program_a, members=2, entries_each=2)
    client.get(url(slug), PERIOD)  # warm caches
    with CaptureQueriesContext(connection) as small:
        assert client.get(url(slug), PERIOD).status_code == 200
    _grow(program_a, members=20, entries_each=6, start=100)
    with CaptureQueriesContext(connection) as big:
        response = client.get(url(slug), PERIOD)
    assert response.status_code == 200
    assert len(big) == len(small)
    # And the period's length does not change the count either.
    with CaptureQueriesContext(connection) as long:
        client.get(url(slug), {"start": "2023-01", "end": "2025-12"})
    assert len(long) == len(small)


def test_a_report_page_has_a_chart_a_table_and_a_csv(login, supervisor, program_a):
    _grow(program_a, members=2, entries_each=3)
    client = login(supervisor)
    page = client.get(url("points"), PERIOD).content.decode()
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-bar" role="img"' in page
    assert '<th scope="row">Jan 2025</th><td class="num">20</td>' in page
    response = client.get(url("points"), {**PERIOD, "_export": "csv"})
    assert response["Content-Disposition"] == 'attachment; filename="points-program-a-2025-01-2025-03.csv"'
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == [
        ["Month", "Issued", "Redeemed", "Expired", "Corrections"],
        ["Jan 2025", "20", "0", "0", "0"],
        ["Feb 2025", "22", "0", "0", "0"],
        ["Mar 2025", "24", "0", "0", "0"],
        ["Total", "66", "0", "0", "0"],
    ]


def test_defaults_to_the_users_first_program_and_the_last_twelve_months(login, supervisor):
    response = login(supervisor).get(url("points"))
    assert response.status_code == 200
    assert len(response.context["report"].rows) == 12


def test_the_default_months_end_with_this_month_in_the_programs_time_zone(
    login, supervisor, program_a, monkeypatch
):
    # 23:30 UTC on 31 December is already 1 January in Paris, program A's time zone.
    late = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: late)
    report = login(supervisor).get(url("points")).context["report"]
    assert len(report.rows) == 12
    assert report.rows[-1][0] == "Jan 2027" and report.rows[0][0] == "Feb 2026"


def test_the_index_goes_to_the_first_report_keeping_the_query(login, supervisor):
    response = login(supervisor).get(reverse("supervisor:report_index"), PERIOD)
    assert response.status_code == 302
    assert response["Location"] == url("participation") + "?start=2025-01&end=2025-03"


def test_another_programs_report_is_refused(login, supervisor, program_b):
    response = login(supervisor).get(url("points"), {**PERIOD, "program": program_b.pk})
    assert response.status_code == 400
    assert "program" in response.context["form"].errors
    assert "report" not in response.context


def test_an_admin_may_choose_any_program(login, admin_user, program_b):
    response = login(admin_user).get(url("points"), {**PERIOD, "program": program_b.pk})
    assert response.status_code == 200
    assert response.context["period"].program == program_b


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2025-13"},
        {"start": "garbage"},
        {"start": "2025-03", "end": "2025-01"},
        {"start": "2020-01", "end": "2025-01"},  # more than 36 months
        {"start": "1999-01", "end": "1999-02"},
        {"program": "x"},
    ],
)
def test_bad_periods_are_400s_with_field_errors(login, supervisor, params):
    response = login(supervisor).get(url("points"), params)
    assert response.status_code == 400
    assert response.context["form"].errors


def test_an_unknown_report_is_a_404(login, supervisor):
    assert login(supervisor).get(url("nope")).status_code == 404


def test_agents_may_not_see_reports(login, agent_a):
    assert login(agent_a).get(url("points")).status_code == 403


def test_the_navigation_offers_audit_and_reports_to_supervisors_only(login, supervisor, agent_a):
    labels = [item["label"] for item in login(supervisor).get(url("points")).context["nav"]]
    assert "Audit" in labels and "Reports" in labels
    response = login(agent_a).get(reverse("loyalty:member_search"))
    assert "Reports" not in [item["label"] for item in response.context["nav"]]
