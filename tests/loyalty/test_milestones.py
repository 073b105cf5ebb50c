"""Milestone bonuses: birthdays and anniversaries by the program's local date, lifetime milestones
once ever; each paid once however often, and however concurrently, the job runs."""

import threading
from datetime import UTC, date, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Q

from loyalty import milestones, tasks
from loyalty.models import LedgerEntry, Member, MilestoneRule, Tier, TierChange
from loyalty.services import member_create
from tests.loyalty.ledger_helpers import earn

Kind = MilestoneRule.Kind

# 00:30 on 15 March in Paris, and an hour earlier, still 23:30 on the 14th.
PARIS_JUST_AFTER_MIDNIGHT = datetime(2026, 3, 14, 23, 30, tzinfo=UTC)
PARIS_JUST_BEFORE_MIDNIGHT = datetime(2026, 3, 14, 22, 30, tzinfo=UTC)


def a_member(program, *, first_name="Dana", **fields) -> Member:
    return member_create(program=program, first_name=first_name, last_name="Member", **fields)


def bonuses(member: Member):
    return LedgerEntry.objects.filter(account__member=member, kind=LedgerEntry.Kind.BONUS)


@pytest.fixture
def birthday_rule(program_a):
    return MilestoneRule.objects.create(program=program_a, kind=Kind.BIRTHDAY, points=100)


@pytest.fixture
def born_15_march(program_a):
    return a_member(program_a, birth_date=date(1990, 3, 15), joined_on=date(2020, 1, 10))


def test_a_birthday_is_paid_once_local_midnight_has_passed(birthday_rule, born_15_march):
    report = milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT)

    assert (report.birthday, report.points) == (1, 100)
    entry = bonuses(born_15_march).get()
    assert entry.points == 100
    assert entry.idempotency_key == f"milestone:birthday:{born_15_march.pk}:2026"
    assert (entry.reason, entry.actor_label, entry.source) == (
        "Birthday bonus 2026",
        "job:pay_milestones",
        LedgerEntry.Source.JOB,
    )
    born_15_march.account.refresh_from_db()
    assert born_15_march.account.balance == 100


def test_a_birthday_is_not_paid_while_it_is_still_the_day_before_locally(birthday_rule, born_15_march):
    report = milestones.milestones_pay(now=PARIS_JUST_BEFORE_MIDNIGHT)

    assert report.paid == 0
    assert not bonuses(born_15_march).exists()


def test_a_birthday_follows_each_programs_own_time_zone(program_b, birthday_rule, born_15_march):
    MilestoneRule.objects.create(program=program_b, kind=Kind.BIRTHDAY, points=50)
    in_new_york = a_member(program_b, birth_date=date(1985, 3, 15))

    milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT)  # 19:30 on the 14th in New York
    assert bonuses(born_15_march).count() == 1
    assert not bonuses(in_new_york).exists()

    milestones.milestones_pay(now=datetime(2026, 3, 15, 4, 10, tzinfo=UTC))  # 00:10 in New York
    assert bonuses(in_new_york).get().points == 50


@pytest.mark.parametrize(
    ("moment", "paid"),
    [
        (datetime(2027, 2, 28, 12, 0, tzinfo=UTC), True),  # non-leap year: the 28th stands in
        (datetime(2027, 3, 1, 12, 0, tzinfo=UTC), False),
        (datetime(2028, 2, 28, 12, 0, tzinfo=UTC), False),  # leap year: only the day itself
        (datetime(2028, 2, 29, 12, 0, tzinfo=UTC), True),
    ],
)
def test_a_29_february_birthday_is_paid_on_28_february_in_non_leap_years(
    program_a, birthday_rule, moment, paid
):
    leapling = a_member(program_a, birth_date=date(2000, 2, 29))

    milestones.milestones_pay(now=moment)

    assert bonuses(leapling).count() == (1 if paid else 0)


def test_a_28_february_birthday_is_still_paid_on_its_own_day(program_a, birthday_rule):
    born_28th = a_member(program_a, birth_date=date(2001, 2, 28))

    milestones.milestones_pay(now=datetime(2027, 2, 28, 12, 0, tzinfo=UTC))

    assert bonuses(born_28th).count() == 1


def test_the_job_run_twice_pays_once(birthday_rule, born_15_march, program_a):
    MilestoneRule.objects.create(program=program_a, kind=Kind.ANNIVERSARY, points=30)
    a_member(program_a, first_name="Eve", joined_on=date(2024, 3, 15))

    first = milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT)
    second = milestones.milestones_pay(now=datetime(2026, 3, 15, 9, 10, tzinfo=UTC))  # later that day

    assert (first.birthday, first.anniversary) == (1, 1)
    assert (second.paid, second.already_paid, second.entries) == (0, 0, [])
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.BONUS).count() == 2


def test_a_birthday_is_paid_again_the_next_year(birthday_rule, born_15_march):
    milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT)
    milestones.milestones_pay(now=datetime(2027, 3, 15, 8, 0, tzinfo=UTC))

    assert sorted(bonuses(born_15_march).values_list("reason", flat=True)) == [
        "Birthday bonus 2026",
        "Birthday bonus 2027",
    ]


def test_a_replayed_payment_is_counted_as_already_paid_not_as_a_new_one(
    birthday_rule, born_15_march, monkeypatch
):
    milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT)
    # What a concurrent run sees: its query ran before the other run's payment committed.
    monkeypatch.setattr(milestones, "_paid_already", lambda rule, year: Q(pk__in=[]))

    report = milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT)

    assert (report.paid, report.points, report.already_paid, report.entries) == (0, 0, 1, [])
    assert bonuses(born_15_march).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_pay_each_birthday_once(program_a, birthday_rule):
    members = [a_member(program_a, first_name=f"Twin{i}", birth_date=date(1990, 3, 15)) for i in range(6)]
    barrier = threading.Barrier(2)
    reports, errors = [], []

    def run():
        try:
            barrier.wait(timeout=10)
            reports.append(milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT))
        except Exception as error:  # reported below, with the thread's own traceback lost otherwise
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    # The loser of a race on a member gets a replay, counted apart from payments.
    assert sum(report.birthday for report in reports) == 6
    assert all(report.birthday + report.already_paid <= 6 for report in reports)
    assert sum(report.points for report in reports) == 600
    for member in members:
        assert bonuses(member).count() == 1
        member.account.refresh_from_db()
        assert member.account.balance == 100


def test_an_anniversary_is_not_paid_in_the_joining_year(program_a):
    MilestoneRule.objects.create(program=program_a, kind=Kind.ANNIVERSARY, points=30)
    newcomer = a_member(program_a, joined_on=date(2026, 3, 15))
    veteran = a_member(program_a, first_name="Vic", joined_on=date(2023, 3, 15))

    report = milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT)

    assert report.anniversary == 1
    assert not bonuses(newcomer).exists()
    entry = bonuses(veteran).get()
    assert (entry.points, entry.reason) == (30, "Membership anniversary bonus: 3 years as a member")
    assert entry.idempotency_key == f"milestone:anniversary:{veteran.pk}:2026"


def test_a_lifetime_milestone_is_paid_once_even_as_points_keep_growing(program_a, member_a, member_b):
    rule = MilestoneRule.objects.create(program=program_a, kind=Kind.LIFETIME, points=200, threshold=1000)
    earn(member_a.account, 1000, now=PARIS_JUST_BEFORE_MIDNIGHT)
    earn(member_b.account, 999, now=PARIS_JUST_BEFORE_MIDNIGHT)

    first = milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT)
    earn(member_a.account, 5000, now=PARIS_JUST_AFTER_MIDNIGHT)
    later = milestones.milestones_pay(now=datetime(2027, 1, 1, tzinfo=UTC))

    assert (first.lifetime, first.points, later.paid) == (1, 200, 0)
    entry = bonuses(member_a).get()
    assert entry.idempotency_key == f"milestone:lifetime:{rule.pk}:{member_a.pk}"
    assert entry.reason == "Lifetime milestone bonus: 1000 points earned"
    assert not bonuses(member_b).exists()


def test_each_lifetime_milestone_pays_once_on_its_own(program_a, member_a):
    MilestoneRule.objects.create(program=program_a, kind=Kind.LIFETIME, points=100, threshold=1000)
    MilestoneRule.objects.create(program=program_a, kind=Kind.LIFETIME, points=500, threshold=5000)
    earn(member_a.account, 1200, now=PARIS_JUST_BEFORE_MIDNIGHT)
    milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT)
    earn(member_a.account, 4000, now=PARIS_JUST_AFTER_MIDNIGHT)

    report = milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT)

    assert (report.lifetime, report.points) == (1, 500)
    assert sorted(bonuses(member_a).values_list("points", flat=True)) == [100, 500]


def test_inactive_members_inactive_rules_and_inactive_programs_are_skipped(
    program_a, program_b, birthday_rule, born_15_march
):
    suspended = a_member(program_a, first_name="Sam", birth_date=date(1990, 3, 15))
    suspended.status = Member.Status.SUSPENDED
    suspended.save()
    MilestoneRule.objects.create(program=program_a, kind=Kind.ANNIVERSARY, points=30, is_active=False)
    joined_15_march = a_member(program_a, first_name="Ann", joined_on=date(2020, 3, 15))
    MilestoneRule.objects.create(program=program_b, kind=Kind.BIRTHDAY, points=50)
    program_b.is_active = False
    program_b.save()
    in_closed_program = a_member(program_b, birth_date=date(1990, 3, 15))

    report = milestones.milestones_pay(now=datetime(2026, 3, 15, 12, 0, tzinfo=UTC))

    assert report.summary() == {
        "birthday": 1,
        "anniversary": 0,
        "lifetime": 0,
        "points": 100,
        "already_paid": 0,
    }
    assert bonuses(born_15_march).count() == 1
    for skipped in (suspended, joined_15_march, in_closed_program):
        assert not bonuses(skipped).exists()


def test_the_program_option_pays_only_that_program(program_a, program_b, birthday_rule, born_15_march):
    MilestoneRule.objects.create(program=program_b, kind=Kind.BIRTHDAY, points=50)
    in_new_york = a_member(program_b, birth_date=date(1985, 3, 15))

    milestones.milestones_pay(now=datetime(2026, 3, 15, 12, 0, tzinfo=UTC), program=program_b)

    assert bonuses(in_new_york).count() == 1
    assert not bonuses(born_15_march).exists()


def test_finding_the_members_due_costs_one_query_per_rule_however_many_there_are(
    program_a, birthday_rule, django_assert_num_queries
):
    MilestoneRule.objects.create(program=program_a, kind=Kind.LIFETIME, points=100, threshold=10**6)
    for i in range(20):
        a_member(program_a, first_name=f"Not{i}", birth_date=date(1990, 6, 1))

    # One query for the rules, one per rule for its members: nobody is due, nothing is posted.
    with django_assert_num_queries(3):
        report = milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT)
    assert report.paid == 0


def test_a_bonus_that_reaches_a_tier_upgrades_the_member_at_once(program_a, birthday_rule, born_15_march):
    silver = Tier.objects.create(program=program_a, name="Silver", rank=1, threshold=100)

    milestones.milestones_pay(now=PARIS_JUST_AFTER_MIDNIGHT)

    born_15_march.refresh_from_db()
    assert born_15_march.tier == silver
    change = TierChange.objects.get(member=born_15_march)
    assert (change.direction, change.actor_label) == (TierChange.Direction.UPGRADE, "job:pay_milestones")


def test_the_task_pays_and_returns_a_summary(program_a, member_a):
    MilestoneRule.objects.create(program=program_a, kind=Kind.LIFETIME, points=200, threshold=100)
    earn(member_a.account, 150)

    summary = tasks.pay_milestones.delay(program_a.pk).get()

    assert summary["lifetime"] == 1
    assert tasks.pay_milestones.delay().get()["lifetime"] == 0
    assert bonuses(member_a).count() == 1


def run_command(*args) -> str:
    out = StringIO()
    call_command("pay_milestones", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_the_command_pays_what_is_due_at_the_given_moment(birthday_rule, born_15_march):
    output = run_command("--now", "2026-03-15T00:30:00+01:00", "--program", "program-a")

    assert "Paid 1 birthday, 0 anniversary and 0 lifetime milestone bonuses: 100 points." in output
    assert bonuses(born_15_march).count() == 1
    assert "Paid 0 birthday" in run_command("--now", "2026-03-15T00:30:00+01:00")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--program", "no-such-program"], "No program with slug 'no-such-program'"),
        (["--now", "the ides of March"], "not a date-time"),
    ],
)
def test_the_command_refuses_bad_input_and_pays_nothing(birthday_rule, born_15_march, args, message):
    with pytest.raises(CommandError, match=message):
        run_command(*args)
    assert not bonuses(born_15_march).exists()


def test_the_command_refuses_an_inactive_program(program_a, birthday_rule):
    program_a.is_active = False
    program_a.save()

    with pytest.raises(CommandError, match="inactive"):
        run_command("--program", "program-a")


def test_the_job_is_on_the_beat_every_hour_at_minute_ten(settings):
    from config.celery_app import app

    entry = settings.CELERY_BEAT_SCHEDULE["pay-milestones"]
    assert entry["task"] == "loyalty.tasks.pay_milestones"
    assert (entry["schedule"].minute, entry["schedule"].hour) == ({10}, set(range(24)))
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks
