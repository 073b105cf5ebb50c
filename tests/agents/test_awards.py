"""The monthly awards: posted once, corrections as differences, immutable, refused while open."""

from datetime import date, datetime
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.models import Sum

from agents import selectors, services, tasks
from agents.models import AwardEntry
from agents.periods import next_month
from loyalty.errors import ApplicationError
from loyalty.models.core import ImmutableRecordError
from tests.agents.conftest import LOWER, MONTH, kpis, rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def rules(program_a):
    return {
        "csat": rule(program_a, metric="csat", target=Decimal("85"), points=100),
        "aht": rule(program_a, metric="aht", direction=LOWER, target=Decimal("300"), points=40),
    }


def total(agent, month=MONTH):
    return AwardEntry.objects.filter(agent=agent, period_start=month).aggregate(t=Sum("points"))["t"] or 0


def test_the_monthly_job_run_twice_posts_once(profile_a, rules):
    kpis(profile_a, survey_answers=20, satisfied_answers=18, contacts_handled=10, talk_seconds=2900)
    first = services.awards_post(month=MONTH)
    second = services.awards_post(month=MONTH)
    assert (first.entries, first.points) == (2, 140)
    assert (second.entries, second.points, second.unchanged) == (0, 0, 2)
    assert AwardEntry.objects.filter(agent=profile_a).count() == 2
    assert total(profile_a) == 140
    keys = set(AwardEntry.objects.values_list("idempotency_key", flat=True))
    assert keys == {f"agents:2025-03:{profile_a.pk}:{rules[m].pk}:1" for m in ("csat", "aht")}


def test_moving_an_agent_to_another_team_does_not_rescore_months_already_awarded(profile_a, program_a, rules):
    elsewhere = services.team_create(program=program_a, name="Team C")
    rule(program_a, team=elsewhere, metric="csat", target=Decimal("50"), points=500)
    kpis(profile_a, survey_answers=20, satisfied_answers=18, contacts_handled=10, talk_seconds=2900)
    assert services.awards_post(month=MONTH).points == 140

    profile_a.team = elsewhere
    profile_a.save()  # moved today, long after March
    rerun = services.awards_post(month=MONTH)

    assert (rerun.entries, rerun.points) == (0, 0)
    assert total(profile_a) == 140
    assert set(AwardEntry.objects.filter(agent=profile_a).values_list("team_id", flat=True)) == {
        profile_a.history.earliest().team_id
    }


def test_a_month_after_the_move_is_scored_by_the_new_teams_rules(profile_a, program_a, team_a, rules):
    elsewhere = services.team_create(program=program_a, name="Team C")
    rule(program_a, team=elsewhere, metric="csat", target=Decimal("50"), points=500)
    april = next_month(MONTH)
    counts = {"survey_answers": 20, "satisfied_answers": 18, "contacts_handled": 10, "talk_seconds": 2900}
    for month in (MONTH, april):
        kpis(profile_a, month, **counts)
    profile_a.team = elsewhere
    profile_a._history_date = datetime(2025, 3, 20, tzinfo=ZoneInfo("UTC"))  # moved in late March
    profile_a.save()

    services.awards_post(month=MONTH)
    services.awards_post(month=april)

    # Both months end after the move: Team C's csat rule (500) and the program's aht rule (40).
    assert total(profile_a, MONTH) == total(profile_a, april) == 540
    assert set(AwardEntry.objects.values_list("team_id", flat=True)) == {elsewhere.pk}


def test_a_late_kpi_correction_posts_the_difference(profile_a, rules):
    kpis(profile_a, survey_answers=20, satisfied_answers=18, contacts_handled=10, talk_seconds=2900)
    services.awards_post(month=MONTH)
    # The contact centre corrects the 1st of March: CSAT falls to 80 %, AHT stays 290 s.
    kpis(profile_a, survey_answers=20, satisfied_answers=16, contacts_handled=10, talk_seconds=2900)
    report = services.awards_post(month=MONTH)
    assert (report.entries, report.corrections, report.points) == (1, 1, -100)
    correction = AwardEntry.objects.get(agent=profile_a, kind=AwardEntry.Kind.CORRECTION)
    assert (correction.rule, correction.seq, correction.points, correction.total_after) == (
        rules["csat"],
        2,
        -100,
        0,
    )
    assert correction.metric_value == Decimal("80.00")
    assert total(profile_a) == 40
    # Corrected back up later: another difference, and the award ledger keeps all three steps.
    kpis(profile_a, survey_answers=20, satisfied_answers=19, contacts_handled=10, talk_seconds=2900)
    assert services.awards_post(month=MONTH).points == 100
    assert list(
        AwardEntry.objects.filter(rule=rules["csat"]).order_by("seq").values_list("points", flat=True)
    ) == [100, -100, 100]
    assert services.awards_post(month=MONTH).entries == 0


def test_the_award_equals_the_months_leaderboard_points(profile_a, make_agent, rules):
    other = make_agent()
    kpis(profile_a, survey_answers=20, satisfied_answers=18, contacts_handled=10, talk_seconds=3500)
    kpis(other, survey_answers=10, satisfied_answers=9, contacts_handled=10, talk_seconds=2000)
    services.awards_post(month=MONTH)
    board = selectors.leaderboard(period_start=MONTH, period_end=next_month(MONTH), team=profile_a.team)
    assert {row.pk: row.points for row in board} == {profile_a.pk: total(profile_a), other.pk: total(other)}
    assert (total(profile_a), total(other)) == (100, 140)


def test_agents_without_kpis_in_the_month_get_no_entries(profile_a, make_agent, rules):
    make_agent()
    kpis(profile_a, contacts_handled=1)
    report = services.awards_post(month=MONTH)
    assert report.agents == 1
    assert set(AwardEntry.objects.values_list("agent", flat=True)) == {profile_a.pk}


def test_a_month_still_open_somewhere_is_refused(profile_a, rules):
    kpis(profile_a, contacts_handled=1)
    # Program A runs on Paris time: 31 March 23:30 there is still March (21:30 UTC).
    still_march = datetime(2025, 3, 31, 23, 30, tzinfo=ZoneInfo("Europe/Paris"))
    with pytest.raises(ApplicationError) as error:
        services.awards_post(month=MONTH, now=still_march)
    assert error.value.code == "open_period"
    assert not AwardEntry.objects.exists()
    april = datetime(2025, 4, 1, 0, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert services.awards_post(month=MONTH, now=april).entries == 2


def test_award_entries_cannot_be_changed_or_deleted(profile_a, rules):
    kpis(profile_a, survey_answers=1, satisfied_answers=1)
    services.awards_post(month=MONTH)
    entry = AwardEntry.objects.first()
    entry.points = 1_000
    with pytest.raises(ImmutableRecordError):
        entry.save()
    with pytest.raises(ImmutableRecordError):
        entry.delete()
    with pytest.raises(ImmutableRecordError):
        AwardEntry.objects.filter(pk=entry.pk).update(points=5)


@pytest.mark.postgres
def test_postgres_refuses_raw_sql_changes_to_award_entries(profile_a, rules):
    from django.db.utils import IntegrityError, InternalError

    kpis(profile_a, survey_answers=1, satisfied_answers=1)
    services.awards_post(month=MONTH)
    entry = AwardEntry.objects.first()
    for sql in (
        "UPDATE agents_awardentry SET points = 5 WHERE id = %s",
        "DELETE FROM agents_awardentry WHERE id = %s",
    ):
        with (
            pytest.raises((IntegrityError, InternalError), match="immutable"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [entry.pk])
    assert AwardEntry.objects.get(pk=entry.pk).points == entry.points


def test_the_task_takes_a_period_string_and_is_idempotent(profile_a, rules):
    kpis(profile_a, survey_answers=20, satisfied_answers=20)
    assert tasks.award_agent_points.delay("2025-03").get()["entries"] == 2
    assert tasks.award_agent_points.delay("2025-03").get() == {
        "period": "2025-03",
        "agents": 0,
        "entries": 0,
        "corrections": 0,
        "points": 0,
        "unchanged": 2,
    }


def test_the_command_awards_a_closed_month(profile_a, rules):
    kpis(profile_a, survey_answers=20, satisfied_answers=20)
    out = StringIO()
    call_command("award_agent_points", "--period", "2025-03", stdout=out)
    assert "2025-03: 2 entries posted" in out.getvalue()
    assert total(profile_a) == 100
    assert AwardEntry.objects.filter(actor_label="command:award_agent_points").count() == 2


@pytest.mark.parametrize("period", ["2025-13", "march", "", "2025-3-1"])
def test_the_command_refuses_a_bad_period(period, db):
    with pytest.raises(CommandError, match="is not a month like"):
        call_command("award_agent_points", "--period", period)


def test_the_command_refuses_a_month_not_yet_over(profile_a):
    with pytest.raises(CommandError, match="not over yet"):
        call_command("award_agent_points", "--period", "2025-03", "--now", "2025-03-20T12:00:00+00:00")
    assert not AwardEntry.objects.exists()


def test_a_kpi_record_saying_nothing_new_writes_no_history(profile_a):
    record = kpis(profile_a, contacts_handled=3)
    _, changed = services.kpi_record_upsert(
        agent=profile_a, kind="day", period_start=MONTH, contacts_handled=3
    )
    assert not changed
    assert record.history.count() == 1


def test_day_and_month_records_of_one_month_are_refused(profile_a):
    kpis(profile_a, contacts_handled=3)
    with pytest.raises(ApplicationError, match="one kind per month"):
        services.kpi_record_upsert(agent=profile_a, kind="month", period_start=date(2025, 3, 1))


def test_the_daily_run_awards_last_month(profile_a, rules):
    kpis(profile_a, survey_answers=20, satisfied_answers=20)
    report = services.awards_run_scheduled(now=datetime(2025, 4, 1, 14, tzinfo=ZoneInfo("UTC")))
    assert (report.month, report.points) == (MONTH, 100)
