"""The periodic tier review: the tier the window's qualifying points earn, down as well as up,
found with a constant number of queries however many members a program has."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty import notifications, tasks
from loyalty.audit import acting_as
from loyalty.models import Member, Tier, TierChange
from loyalty.services import member_create
from loyalty.tier_review import tiers_review_all
from tests.loyalty.ledger_helpers import earn, take_back

REVIEW = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
IN_WINDOW = REVIEW - timedelta(days=30)


@pytest.fixture
def silver(program_a):
    return Tier.objects.create(program=program_a, name="Silver", rank=1, threshold=100)


@pytest.fixture
def gold(program_a, silver):
    return Tier.objects.create(program=program_a, name="Gold", rank=2, threshold=1000)


def a_member(program, *, tier=None, points=0, name="Dana") -> Member:
    member = member_create(program=program, first_name=name, last_name="Member", tier=tier)
    if points:
        earn(member.account, points, now=IN_WINDOW)
    return member


def test_the_review_downgrades_a_member_whose_window_points_fell_below_the_threshold(gold, silver, program_a):
    member = a_member(program_a, tier=gold, points=600)

    report = tiers_review_all(now=REVIEW)

    member.refresh_from_db()
    assert member.tier == silver
    change = TierChange.objects.get(member=member)
    assert (change.from_tier, change.to_tier, change.direction) == (
        gold,
        silver,
        TierChange.Direction.DOWNGRADE,
    )
    assert (change.qualifying_points, change.reason) == (600, "Tier review: 600 qualifying points")
    assert (change.actor_label, change.changed_at) == ("job:review_tiers", REVIEW)
    assert (report.members, report.downgrades, report.upgrades, report.changes) == (1, 1, 0, [change.pk])


@pytest.mark.parametrize(("points", "keeps_gold"), [(1000, True), (999, False)])
def test_exactly_at_the_threshold_keeps_the_tier_and_one_point_under_drops_it(
    gold, silver, program_a, points, keeps_gold
):
    member = a_member(program_a, tier=gold, points=points)

    tiers_review_all(now=REVIEW)

    member.refresh_from_db()
    assert member.tier == (gold if keeps_gold else silver)
    assert TierChange.objects.filter(member=member).count() == (0 if keeps_gold else 1)


def test_points_older_than_the_window_no_longer_qualify(gold, program_a):
    member = a_member(program_a, tier=gold)
    earn(member.account, 5000, now=REVIEW - timedelta(days=program_a.tier_window_days + 1))

    tiers_review_all(now=REVIEW)

    member.refresh_from_db()
    assert member.tier is None
    assert TierChange.objects.get(member=member).reason == "Tier review: 0 qualifying points"


def test_a_returned_purchase_stops_qualifying(gold, silver, program_a):
    member = a_member(program_a, tier=gold)
    purchase = earn(member.account, 1200, now=IN_WINDOW).entry
    take_back(purchase, points=300, now=IN_WINDOW + timedelta(days=1))

    tiers_review_all(now=REVIEW)

    member.refresh_from_db()
    assert member.tier == silver
    assert TierChange.objects.get(member=member).qualifying_points == 900


def test_the_review_makes_an_upgrade_that_was_missed(gold, program_a):
    member = a_member(program_a, points=1500)

    report = tiers_review_all(now=REVIEW)

    member.refresh_from_db()
    assert member.tier == gold
    assert TierChange.objects.get(member=member).direction == TierChange.Direction.UPGRADE
    assert (report.upgrades, report.downgrades) == (1, 0)


def test_a_second_review_changes_nothing(gold, silver, program_a):
    a_member(program_a, tier=gold, points=600)
    a_member(program_a, points=1500, name="Up")

    first = tiers_review_all(now=REVIEW)
    second = tiers_review_all(now=REVIEW)

    assert (first.upgrades, first.downgrades) == (1, 1)
    assert (second.members, second.changes) == (2, [])
    assert TierChange.objects.count() == 2


def test_closed_members_and_other_programs_are_left_alone(gold, silver, program_a, program_b):
    closed = a_member(program_a, tier=gold)
    closed.status = Member.Status.CLOSED
    closed.save()
    bronze_b = Tier.objects.create(program=program_b, name="Bronze", rank=1, threshold=10)
    in_b = a_member(program_b, tier=bronze_b)

    report = tiers_review_all(now=REVIEW, program=program_a)

    assert report.members == 0
    closed.refresh_from_db()
    in_b.refresh_from_db()
    assert (closed.tier, in_b.tier) == (gold, bronze_b)


def test_the_member_is_told_about_the_change(
    gold, silver, program_a, monkeypatch, django_capture_on_commit_callbacks
):
    told = []
    monkeypatch.setattr(notifications, "_handlers", [lambda **message: told.append(message)])
    member = a_member(program_a, tier=gold, points=600)

    with django_capture_on_commit_callbacks(execute=True):
        tiers_review_all(now=REVIEW)

    assert [(m["member"].pk, m["kind"], m["context"]["to"]) for m in told] == [
        (member.pk, "tier_changed", "Silver")
    ]


def test_the_reviews_query_count_does_not_grow_with_the_number_of_members(
    gold, silver, program_a, django_assert_num_queries
):
    for i in range(3):
        a_member(program_a, tier=silver, points=150, name=f"Few{i}")
    with CaptureQueriesContext(connection) as few:
        assert tiers_review_all(now=REVIEW).members == 3
    for i in range(27):
        a_member(program_a, tier=silver, points=150, name=f"Many{i}")

    with django_assert_num_queries(len(few)):
        report = tiers_review_all(now=REVIEW)

    assert (report.members, report.changes) == (30, [])


def test_the_reviews_query_count_stays_the_same_however_many_members_change(
    gold, silver, program_a, django_assert_num_queries, django_capture_on_commit_callbacks, monkeypatch
):
    told = []
    monkeypatch.setattr(notifications, "_handlers", [lambda **message: told.append(message)])
    for i in range(3):
        a_member(program_a, tier=gold, points=150, name=f"Few{i}")
    with CaptureQueriesContext(connection) as few:
        assert tiers_review_all(now=REVIEW).downgrades == 3
    for i in range(30):
        a_member(program_a, tier=gold, points=150, name=f"Many{i}")

    with django_assert_num_queries(len(few)), django_capture_on_commit_callbacks(execute=True):
        report = tiers_review_all(now=REVIEW)

    assert (report.members, report.downgrades, len(report.changes)) == (33, 30, 30)
    assert Member.objects.filter(program=program_a, tier=silver).count() == 33
    assert TierChange.objects.count() == 33
    assert len(told) == 30  # every member of the second review told once
    assert len({m["dedupe_key"] for m in told}) == 30


def test_each_changed_member_gets_a_history_row_labelled_with_the_job(gold, silver, program_a):
    member = a_member(program_a, tier=gold, points=150)
    with acting_as("command:review_tiers"):
        tiers_review_all(now=REVIEW)

    latest = member.history.latest("history_id")
    assert (latest.tier_id, latest.history_type) == (silver.pk, "~")
    assert latest.history_change_reason == "command:review_tiers"
    # Without an acting label, the review's own.
    member.tier = gold
    member.save()
    tiers_review_all(now=REVIEW)
    assert member.history.latest("history_id").history_change_reason == "job:review_tiers"


def test_the_task_reviews_and_returns_a_summary(gold, silver, program_a):
    member = a_member(program_a, tier=gold)  # no points in any window ending now

    assert tasks.review_tiers.delay(program_a.pk).get() == {"members": 1, "upgrades": 0, "downgrades": 1}
    member.refresh_from_db()
    assert member.tier is None


def run_command(*args) -> str:
    out = StringIO()
    call_command("review_tiers", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_the_command_reviews_as_of_the_given_moment(gold, silver, program_a):
    member = a_member(program_a, tier=gold, points=600)

    output = run_command("--now", REVIEW.isoformat(), "--program", "program-a")

    assert "Reviewed 1 members: 0 upgraded, 1 downgraded." in output
    member.refresh_from_db()
    assert member.tier == silver


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--program", "no-such-program"], "No program with slug 'no-such-program'"),
        (["--now", "first of the month"], "not a date-time"),
    ],
)
def test_the_command_refuses_bad_input_and_changes_nothing(gold, program_a, args, message):
    member = a_member(program_a, tier=gold)

    with pytest.raises(CommandError, match=message):
        run_command(*args)

    member.refresh_from_db()
    assert member.tier == gold


def test_the_review_is_on_the_beat_on_the_first_of_every_month(settings):
    from config.celery_app import app

    entry = settings.CELERY_BEAT_SCHEDULE["review-tiers"]
    assert entry["task"] == "loyalty.tasks.review_tiers"
    schedule = entry["schedule"]
    assert (schedule.day_of_month, schedule.hour, schedule.minute) == ({1}, {3}, {0})
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks
