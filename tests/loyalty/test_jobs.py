"""The ledger jobs as commands and Celery tasks: thin wrappers that run the ledger once."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from loyalty import ledger, tasks
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, PointLot, PointsAccount

JOB = Actor.job("test")


@pytest.fixture
def old_points(member_a):
    """100 points earned 13 months ago under a 12-month policy: due to expire."""
    earned = timezone.now() - timedelta(days=400)
    ledger.credit(
        account=member_a.account,
        points=100,
        reason="Old purchase",
        actor=JOB,
        idempotency_key="old",
        source="api",
        occurred_at=earned,
        now=earned,
    )
    return member_a.account


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_expire_points_expires_once_however_often_it_runs(old_points):
    assert "Expired 100 points in 1 lots of 1 accounts" in run("expire_points")
    assert "Expired 0 points" in run("expire_points")
    old_points.refresh_from_db()
    assert (old_points.balance, old_points.lifetime_expired) == (0, 100)
    expiry = LedgerEntry.objects.get(kind=LedgerEntry.Kind.EXPIRE)
    assert (expiry.actor_label, expiry.reason) == ("job:expire_points", "Points reached their expiry date")


def test_expire_points_runs_on_the_default_workers_unless_told(old_points, monkeypatch):
    asked, real = [], ledger.expire_due_lots

    def expire(**kwargs):
        asked.append(kwargs["workers"])
        return real(**kwargs)

    monkeypatch.setattr(ledger, "expire_due_lots", expire)
    assert "Expired 100 points in 1 lots of 1 accounts" in run("expire_points")
    assert "Expired 0 points" in run("expire_points", "--workers", "3")
    assert tasks.expire_points.delay().get() == {"accounts": 0, "lots": 0, "points": 0}
    assert asked == [ledger.EXPIRY_WORKERS, 3, ledger.EXPIRY_WORKERS]


def test_expire_points_honours_now(old_points):
    assert "Expired 0 points" in run("expire_points", "--now", "2020-01-01T00:00:00+00:00")
    assert PointLot.objects.get(account=old_points).remaining == 100


def test_expire_points_rejects_a_bad_moment(old_points):
    with pytest.raises(CommandError, match="not a date-time"):
        run("expire_points", "--now", "yesterday-ish")
    assert PointLot.objects.get(account=old_points).remaining == 100


def test_activate_pending_makes_points_spendable_once(member_a, program_a):
    program_a.pending_days = 14
    program_a.save()
    earned = timezone.now() - timedelta(days=20)
    ledger.credit(
        account=member_a.account,
        points=40,
        reason="Purchase",
        actor=JOB,
        idempotency_key="p",
        source="api",
        occurred_at=earned,
        now=earned,
    )
    assert PointsAccount.objects.get(pk=member_a.account.pk).pending == 40
    assert "Made 40 points available" in run("activate_pending")
    assert "Made 0 points available" in run("activate_pending")
    account = PointsAccount.objects.get(pk=member_a.account.pk)
    assert (account.balance, account.pending) == (40, 0)


def test_reconcile_ledger_is_clean_and_exits_non_zero_on_a_wrong_balance(old_points):
    assert "Ledger reconciles" in run("reconcile_ledger")
    PointsAccount.objects.filter(pk=old_points.pk).update(balance=99)  # simulated corruption
    out = StringIO()
    with pytest.raises(CommandError, match="Reconcile found"):
        call_command("reconcile_ledger", stdout=out)
    assert f"account {old_points.pk}: balance = sum(entries): expected 99, found 100" in out.getvalue()


def test_reconcile_ledger_refuses_an_unknown_program(db):
    with pytest.raises(CommandError, match="No program with slug 'nope'"):
        run("reconcile_ledger", "--program", "nope")


def test_tasks_run_the_same_jobs(old_points):
    assert tasks.expire_points.delay().get() == {"accounts": 1, "lots": 1, "points": -100}
    assert tasks.activate_pending_points.delay().get() == {"accounts": 0, "lots": 0, "points": 0}
    assert tasks.reconcile_ledger.delay().get() == {"problems": 0, "accounts": []}


def test_every_periodic_job_is_on_the_beat_schedule_and_registered(settings):
    from config.celery_app import app

    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    ledger_jobs = {
        "loyalty.tasks.expire_points",
        "loyalty.tasks.activate_pending_points",
        "loyalty.tasks.reconcile_ledger",
    }
    assert ledger_jobs <= scheduled
    app.loader.import_default_modules()
    # A typo in a schedule entry would otherwise fail silently at run time.
    assert scheduled <= set(app.tasks)


@pytest.mark.parametrize(
    "command, option, value",
    [
        ("expire_points", "--workers", "0"),
        ("expire_points", "--batch-size", "-5"),
        ("expire_points", "--workers", "two"),
        ("activate_pending", "--batch-size", "0"),
    ],
)
def test_a_job_refuses_a_count_below_one_and_changes_nothing(old_points, command, option, value):
    with pytest.raises(CommandError, match=option):
        run(command, option, value)
    old_points.refresh_from_db()
    assert (old_points.balance, old_points.lifetime_expired) == (100, 0)
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE).exists()
