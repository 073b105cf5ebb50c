"""Each scoring shape, computed by the database exactly as the awards job and leaderboards do."""

from datetime import date
from decimal import Decimal

import pytest

from agents import selectors
from agents.periods import next_month
from tests.agents.conftest import LOWER, MONTH, kpis, rule

pytestmark = pytest.mark.django_db


def points(agent, start=MONTH, end=None):
    board = selectors.leaderboard(period_start=start, period_end=end or next_month(start), team=agent.team)
    return {row.pk: row.points for row in board}[agent.pk]


def csat(agent, satisfied, answers=20):
    kpis(agent, survey_answers=answers, satisfied_answers=satisfied, contacts_handled=answers)


def aht(agent, seconds, contacts=10):
    kpis(agent, contacts_handled=contacts, talk_seconds=seconds * contacts)


@pytest.mark.parametrize(("satisfied", "expected"), [(17, 100), (20, 100), (16, 0)])
def test_a_threshold_rule_pays_its_points_at_or_above_the_target(profile_a, program_a, satisfied, expected):
    rule(program_a, metric="csat", target=Decimal("85"), points=100)
    csat(profile_a, satisfied)  # 17 of 20 = 85 %
    assert points(profile_a) == expected


@pytest.mark.parametrize(
    ("satisfied", "expected"),
    [
        (14, 0),  # 70 %: below the lower threshold
        (16, 0),  # 80 %: the worse end of the scale
        (17, 25),  # 85 %: halfway to the target
        (18, 50),  # 90 %: the target
        (19, 75),  # 95 %: the upper threshold, same rate beyond the target
        (20, 75),  # 100 %: clamped at the upper threshold
    ],
)
def test_a_linear_rule_scales_between_its_thresholds(profile_a, program_a, satisfied, expected):
    rule(program_a, metric="csat", target=Decimal("90"), points=50, lower=Decimal("80"), upper=Decimal("95"))
    csat(profile_a, satisfied)
    assert points(profile_a) == expected


def test_a_cap_bounds_the_points(profile_a, program_a):
    rule(
        program_a,
        metric="csat",
        target=Decimal("90"),
        points=50,
        lower=Decimal("80"),
        upper=Decimal("95"),
        cap=60,
    )
    csat(profile_a, 19)  # 95 % would be 75
    assert points(profile_a) == 60


def test_a_cap_bounds_a_threshold_rule_too(profile_a, program_a):
    rule(program_a, metric="csat", target=Decimal("85"), points=100, cap=30)
    csat(profile_a, 20)
    assert points(profile_a) == 30


@pytest.mark.parametrize(("seconds", "expected"), [(290, 40), (300, 40), (310, 0)])
def test_lower_is_better_for_aht_with_a_threshold(profile_a, program_a, seconds, expected):
    rule(program_a, metric="aht", direction=LOWER, target=Decimal("300"), points=40)
    aht(profile_a, seconds)
    assert points(profile_a) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(500, 0), (420, 0), (360, 30), (300, 60), (240, 90), (200, 90)],
)
def test_lower_is_better_for_aht_on_a_linear_scale(profile_a, program_a, seconds, expected):
    # Worse end 420 s (nothing), target 300 s (60 points), better end 240 s (90 points).
    rule(
        program_a,
        metric="aht",
        direction=LOWER,
        target=Decimal("300"),
        points=60,
        lower=Decimal("240"),
        upper=Decimal("420"),
    )
    aht(profile_a, seconds)
    assert points(profile_a) == expected


def test_aht_is_all_handle_time_over_contacts_handled(profile_a, program_a):
    rule(program_a, metric="aht", direction=LOWER, target=Decimal("300"), points=40)
    # (2000 talk + 500 hold + 500 after-contact work) / 10 contacts = 300 s: meets the target.
    kpis(profile_a, contacts_handled=10, talk_seconds=2000, hold_seconds=500, after_contact_seconds=500)
    assert points(profile_a) == 40
    board = selectors.leaderboard(period_start=MONTH, period_end=next_month(MONTH), team=profile_a.team)
    assert board.get(pk=profile_a.pk).metric_aht == pytest.approx(300)


def test_a_month_is_weighted_by_volume_not_an_average_of_days(profile_a, program_a):
    rule(program_a, metric="fcr", target=Decimal("75"), points=10)
    # Day 1: 1 of 1 (100 %); day 2: 60 of 99 (~61 %). Average of days 80 %, but really 61 of 100.
    kpis(profile_a, MONTH, issues=1, resolved_first_contact=1)
    kpis(profile_a, date(2025, 3, 2), issues=99, resolved_first_contact=60)
    assert points(profile_a) == 0


def test_a_metric_without_data_scores_nothing(profile_a, program_a):
    rule(program_a, metric="csat", target=Decimal("0"), points=100)
    kpis(profile_a, contacts_handled=5)  # no survey answered: no CSAT at all, not 0 %
    assert points(profile_a) == 0


def test_a_teams_own_rule_replaces_the_programs_for_that_metric(profile_a, make_agent, program_a, team_a):
    other_team = selectors.Team.objects.create(program=program_a, name="Night shift")
    night = make_agent(team=other_team)
    rule(program_a, metric="contacts", target=Decimal("100"), points=10)
    rule(program_a, team=team_a, metric="contacts", target=Decimal("50"), points=20)
    kpis(profile_a, contacts_handled=60)
    kpis(night, contacts_handled=60)
    assert points(profile_a) == 20
    assert points(night) == 0


def test_a_rule_change_applies_from_the_next_month_and_keeps_the_old_version(profile_a, program_a):
    first = rule(program_a, metric="contacts", target=Decimal("50"), points=10)
    # Changed during March 2025: April onwards pays 30, March keeps its 10.
    second = rule(program_a, today=date(2025, 3, 10), metric="contacts", target=Decimal("50"), points=30)
    assert second.effective_from == date(2025, 4, 1)
    kpis(profile_a, MONTH, contacts_handled=60)
    kpis(profile_a, date(2025, 4, 1), contacts_handled=60)
    assert points(profile_a, MONTH) == 10
    assert points(profile_a, date(2025, 4, 1)) == 30
    first.refresh_from_db()
    assert first.points == 10


def test_a_rule_cannot_be_changed_for_the_month_under_way(program_a):
    from loyalty.errors import ApplicationError

    with pytest.raises(ApplicationError) as error:
        rule(program_a, today=date(2025, 3, 10), effective_from=date(2025, 3, 1))
    assert error.value.field == "effective_from"
