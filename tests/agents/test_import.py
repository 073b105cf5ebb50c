"""KPI records from the contact centre's CSV, on the generic import engine."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from agents import services
from agents.models import AwardEntry, KpiRecord
from loyalty.imports.engine import import_create, import_run, report_rows
from tests.agents.conftest import MONTH, rule

pytestmark = pytest.mark.django_db

HEADER = (
    "employee_id,period,contacts_handled,talk_seconds,survey_answers,satisfied_answers,"
    "issues,resolved_first_contact\n"
)


def run(program, text, user):
    batch = import_create(
        program=program, kind="agent_kpis", filename="kpis.csv", content=text.encode(), user=user
    )
    return import_run(batch_id=batch.pk)


def test_good_rows_land_and_bad_rows_are_reported_by_line(program_a, supervisor, profile_a, profile_b):
    text = HEADER + (
        "E-A1,2025-03-01,10,3000,20,18,8,6\n"  # line 2: good
        "E-A1,2025-03-02,5,,,,,\n"  # line 3: good, empty counts are 0
        "E-A1,2025-03-03,5,100,2,3,0,0\n"  # line 4: more satisfied than answers
        "E-B1,2025-03-01,5,100,0,0,0,0\n"  # line 5: an agent of program B
        "E-A1,2025-02-30,5,100,0,0,0,0\n"  # line 6: no such day
        "E-A1,2025-04,50,100,0,0,0,0\n"  # line 7: good, a month (April has no day records)
    )
    batch = run(program_a, text, supervisor)
    assert (batch.landed, batch.failed) == (3, 3)
    assert [(line, field) for line, _, field, _ in report_rows(batch=batch)] == [
        (4, "satisfied_answers"),
        (5, "employee_id"),
        (6, "period"),
    ]
    first = KpiRecord.objects.get(agent=profile_a, period_start=MONTH)
    assert (first.csat_pct, first.aht_seconds, first.fcr_pct) == (90.0, 300.0, 75.0)
    assert KpiRecord.objects.get(agent=profile_a, kind="month").contacts_handled == 50
    assert first.history.first().history_change_reason == "import:kpis.csv"


def test_the_same_file_twice_changes_nothing(program_a, supervisor, profile_a):
    text = HEADER + "E-A1,2025-03-01,10,3000,20,18,8,6\n"
    run(program_a, text, supervisor)
    again = run(program_a, text, supervisor)
    assert (again.landed, again.skipped, again.failed) == (0, 1, 0)
    assert KpiRecord.objects.get().history.count() == 1


def test_a_corrected_export_replaces_the_counts_and_the_awards_post_the_difference(
    program_a, supervisor, profile_a
):
    rule(program_a, metric="csat", target=Decimal("85"), points=100)
    run(program_a, HEADER + "E-A1,2025-03-01,10,3000,20,18,8,6\n", supervisor)
    services.awards_post(month=MONTH)
    corrected = run(program_a, HEADER + "E-A1,2025-03-01,10,3000,20,15,8,6\n", supervisor)
    assert corrected.landed == 1
    record = KpiRecord.objects.get()
    assert record.satisfied_answers == 15
    assert record.history.count() == 2
    services.awards_post(month=MONTH)
    assert list(AwardEntry.objects.order_by("seq").values_list("points", flat=True)) == [100, -100]


def test_an_agent_cannot_import_kpis(program_a, agent_a, profile_a):
    batch = run(program_a, HEADER + "E-A1,2025-03-01,10,3000,20,20,8,8\n", agent_a)
    assert (batch.landed, batch.failed) == (0, 1)
    assert not KpiRecord.objects.exists()


def test_day_and_month_rows_for_one_agent_and_month_are_refused(program_a, supervisor, profile_a):
    batch = run(program_a, HEADER + "E-A1,2025-03-01,10,0,0,0,0,0\nE-A1,2025-03,99,0,0,0,0,0\n", supervisor)
    assert batch.failed == 2
    assert not KpiRecord.objects.exists()


def test_the_import_command_takes_the_kpi_kind(program_a, profile_a, tmp_path):
    path = tmp_path / "kpis.csv"
    path.write_text(HEADER + "E-A1,2025-03-01,10,3000,20,18,8,6\n")
    call_command(
        "import_transactions",
        str(path),
        "--program",
        program_a.slug,
        "--kind",
        "agent_kpis",
        stdout=StringIO(),
    )
    assert KpiRecord.objects.get().contacts_handled == 10
