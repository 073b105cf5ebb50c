"""The ledger under real concurrency, on PostgreSQL: threads with their own connections
race on the same accounts, keys and jobs, and every invariant still holds."""

from __future__ import annotations

import itertools
import os
import random
import threading
from collections import Counter
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection

from loyalty import ledger
from loyalty.ledger import Actor, InsufficientPoints, LedgerError, NothingToReverse
from loyalty.models import LedgerEntry, PointLot, PointsAccount, Program
from loyalty.services import member_create
from tests.loyalty.ledger_helpers import (
    T0,
    Kind,
    assert_ledger_consistent,
    days,
    earn,
    give_back,
    redeem,
    take_back,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREAD_TIMEOUT = 180  # seconds; a deadlock or a lost lock would hang a thread past this


def _skip_waiting_for_disk() -> None:
    # A throwaway test database needs no durability, and waiting for each commit to
    # reach the disk is most of these tests' run time. Isolation and locks are unchanged.
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")


@pytest.fixture(autouse=True)
def fast_commits(transactional_db):
    _skip_waiting_for_disk()
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET synchronous_commit")


def run_together(jobs):
    """Run each callable in its own thread (and connection), all released at once.

    Returns one ("ok", value) or ("error", exception) per job, in order.
    """
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)

    def work(index, job):
        try:
            _skip_waiting_for_disk()
            barrier.wait()
            results[index] = ("ok", job())
        except BaseException as exc:  # reported to the test, never swallowed
            results[index] = ("error", exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i, job), daemon=True) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread never finished: deadlock?"
    return results


def fresh(account) -> PointsAccount:
    return PointsAccount.objects.get(pk=account.pk)


# --- (a) Racing redemptions ---------------------------------------------------------


def test_racing_redemptions_never_spend_more_than_the_balance(member_a):
    account = member_a.account
    for n in range(10):
        earn(account, 10, expires_at=T0 + days(30 + n))
    asks = [5 + (i * 7) % 26 for i in range(20)]  # 5..30 points each, 345 in all

    results = run_together(
        [lambda ask=ask, i=i: redeem(account, ask, key=f"race-{i}") for i, ask in enumerate(asks)]
    )

    won = [ask for ask, (outcome, _) in zip(asks, results, strict=True) if outcome == "ok"]
    lost = [value for outcome, value in results if outcome == "error"]
    assert all(isinstance(error, InsufficientPoints) for error in lost), lost
    assert won and lost
    assert sum(won) <= 100
    account = fresh(account)
    assert account.balance == 100 - sum(won) >= 0
    assert account.lifetime_redeemed == sum(won)
    # Every loser was refused because what was left (never less than what is left now)
    # could not cover its ask.
    assert all(error.extra["shortfall"] > 0 for error in lost)
    assert all(error.extra["available"] >= account.balance for error in lost)
    assert LedgerEntry.objects.filter(kind=Kind.REDEEM).count() == len(won)
    assert_ledger_consistent()


# --- (b) A random mix of everything ------------------------------------------------------

# Thousands by default; raise it for a soak run (LEDGER_MIX_OPERATIONS=50000).
MIX_OPERATIONS = int(os.environ.get("LEDGER_MIX_OPERATIONS", "2000"))
EXPECTED_ERRORS = (InsufficientPoints, NothingToReverse)


def _expected(error: Exception) -> bool:
    """The business refusals a random mix runs into; anything else is a bug."""
    if isinstance(error, EXPECTED_ERRORS):
        return True
    # Reversing more points than an entry has left.
    return type(error) is LedgerError and error.field == "points" and "left to reverse" in error.message


class Mix:
    """Shared state of the random mix: what was posted, so later operations can reverse,
    refund and replay it, and every entry id anyone was given."""

    def __init__(self, accounts, steps_per_thread):
        self.accounts = accounts
        self.steps = steps_per_thread
        self.lock = threading.Lock()
        self.clock = itertools.count()
        self.credits: list[LedgerEntry] = []
        self.redemptions: list[LedgerEntry] = []
        self.replayable: list = []
        self.entry_ids: set[int] = set()
        self.counts: Counter = Counter()
        self.unexpected: list = []

    def now(self, rng):
        # A shared clock three hours a step, with jitter: lots come due as the run goes on.
        return T0 + timedelta(hours=3 * next(self.clock) + rng.uniform(-12, 12))

    def record(self, name, posting, *, replay=None, credit=False, redemption=False):
        with self.lock:
            self.counts[name] += 1
            self.entry_ids.add(posting.entry.pk)
            if credit:
                self.credits.append(posting.entry)
            if redemption:
                self.redemptions.append(posting.entry)
            if replay is not None:
                self.replayable.append((replay, posting.entry.pk))

    def pick(self, rng, items):
        with self.lock:
            return rng.choice(items) if items else None

    def run(self, thread_no: int) -> None:
        rng = random.Random(1000 + thread_no)
        operations = [
            (self.credit, 30),
            (self.debit, 22),
            (self.adjust, 8),
            (self.reverse, 10),
            (self.refund, 8),
            (self.expire, 6),
            (self.activate, 6),
            (self.replay, 10),
        ]
        ops, weights = zip(*operations, strict=True)
        for step in range(self.steps):
            operation = rng.choices(ops, weights)[0]
            key = f"mix-{thread_no}-{step}"
            with self.lock:
                self.counts["operations"] += 1
            try:
                operation(rng, key)
            except Exception as error:
                with self.lock:
                    if _expected(error):
                        self.counts[type(error).__name__] += 1
                    else:
                        self.unexpected.append((operation.__name__, repr(error)))

    def credit(self, rng, key):
        account = rng.choice(self.accounts)
        kwargs = {
            "points": rng.randint(1, 100),
            "kind": rng.choice([Kind.EARN, Kind.EARN, Kind.BONUS]),
            "reason": "Purchase",
            "now": self.now(rng),
        }
        expiry = rng.random()
        if expiry < 0.2:
            kwargs["expires_at"] = None
        elif expiry < 0.5:
            kwargs["expires_at"] = kwargs["now"] + days(rng.uniform(0.5, 20))
        if rng.random() < 0.2:
            kwargs["available_from"] = kwargs["now"] + days(rng.uniform(0, 3))

        def post():
            return earn(account, key=key, **kwargs)

        self.record("credit", post(), replay=post, credit=True)

    def debit(self, rng, key):
        account = rng.choice(self.accounts)
        points, now = rng.randint(1, 150), self.now(rng)

        def post():
            return redeem(account, points, key=key, now=now)

        self.record("debit", post(), replay=post, redemption=True)

    def adjust(self, rng, key):
        account = rng.choice(self.accounts)
        points = rng.choice([-1, 1]) * rng.randint(1, 60)
        now = self.now(rng)

        def post():
            return ledger.adjust(
                account=account,
                points=points,
                reason="Correction",
                actor=Actor.job("mix"),
                idempotency_key=key,
                allow_debt=True,  # only where the program records debts
                now=now,
            )

        posting = post()
        self.record("adjust", posting, replay=post, credit=points > 0)

    def reverse(self, rng, key):
        entry = self.pick(rng, self.credits if rng.random() < 0.7 else self.redemptions)
        if entry is None:
            return
        points = None if rng.random() < 0.5 else rng.randint(1, 60)
        allow_debt, now = rng.random() < 0.5, self.now(rng)

        def post():
            return take_back(entry, points=points, key=key, allow_debt=allow_debt, now=now)

        self.record("reverse", post(), replay=post)

    def refund(self, rng, key):
        entry = self.pick(rng, self.redemptions)
        if entry is None:
            return
        now = self.now(rng)

        def post():
            return give_back(entry, key=key, now=now)

        self.record("refund", post(), replay=post)

    def expire(self, rng, key):
        report = ledger.expire_due_lots(now=self.now(rng), batch_size=rng.randint(1, 3))
        with self.lock:
            self.counts["expire"] += 1
            self.counts["expired lots"] += report.lots
            self.entry_ids.update(report.entries)

    def activate(self, rng, key):
        report = ledger.activate_pending_lots(now=self.now(rng), batch_size=rng.randint(1, 3))
        with self.lock:
            self.counts["activate"] += 1
            self.counts["activated lots"] += report.lots
            self.entry_ids.update(report.entries)

    def replay(self, rng, key):
        picked = self.pick(rng, self.replayable)
        if picked is None:
            return
        post, entry_id = picked
        again = post()
        with self.lock:
            self.counts["replay"] += 1
            if not again.replayed or again.entry.pk != entry_id:
                self.unexpected.append(("replay", f"{entry_id} came back as {again}"))


@pytest.fixture
def mix_accounts(program_a, program_b, member_a, member_b, member_of_b):
    # Program A forbids debts and expires after a month; program B records debts,
    # lets earned points wait two days and expires at year end.
    program_a.expiry_months = 1
    program_a.save()
    program_b.negative_balance_policy = Program.NegativeBalancePolicy.ALLOW_DEBT
    program_b.pending_days = 2
    program_b.expiry_policy = Program.ExpiryPolicy.END_OF_NTH_YEAR
    program_b.save()
    other_of_b = member_create(program=program_b, first_name="Dan", last_name="Other")
    return [member_a.account, member_b.account, member_of_b.account, other_of_b.account]


def test_a_random_mix_of_operations_from_many_threads_leaves_every_invariant_true(mix_accounts):
    mix = Mix(mix_accounts, steps_per_thread=MIX_OPERATIONS // 8)

    results = run_together([lambda n=n: mix.run(n) for n in range(8)])

    assert [outcome for outcome, _ in results] == ["ok"] * 8, results
    assert mix.unexpected == []
    # Every entry in the ledger was handed to exactly the caller that caused it:
    # refused and replayed operations wrote nothing.
    assert set(LedgerEntry.objects.values_list("pk", flat=True)) == mix.entry_ids
    assert_ledger_consistent()
    # Only program B records debts, and no redemption ever drove a balance below zero.
    forbid = Program.NegativeBalancePolicy.FORBID
    assert not LedgerEntry.objects.filter(
        program__negative_balance_policy=forbid, balance_after__lt=0
    ).exists()
    assert not LedgerEntry.objects.filter(kind=Kind.REDEEM, balance_after__lt=0).exists()
    # The mix really exercised everything, refusals included.
    for name in ["credit", "debit", "adjust", "reverse", "refund", "replay", "InsufficientPoints"]:
        assert mix.counts[name] > 0, (name, mix.counts)
    assert mix.counts["expired lots"] > 0 and mix.counts["activated lots"] > 0, mix.counts
    assert mix.counts["operations"] == MIX_OPERATIONS // 8 * 8


# --- (c) One key from many threads ------------------------------------------------------------


def test_the_same_key_from_ten_threads_posts_once_and_all_get_the_entry(member_a):
    account = member_a.account

    credits = run_together([lambda: earn(account, 100, key="order-1") for _ in range(10)])
    # The points of that one credit are all there is: a retry must not be refused for lack of them.
    redemptions = run_together([lambda: redeem(account, 100, key="order-2") for _ in range(10)])

    for key, results in (("order-1", credits), ("order-2", redemptions)):
        postings = [value for outcome, value in results if outcome == "ok"]
        assert len(postings) == 10, results
        assert len({posting.entry.pk for posting in postings}) == 1
        assert sorted(posting.replayed for posting in postings) == [False] + [True] * 9
        assert LedgerEntry.objects.filter(idempotency_key=key).count() == 1
    assert fresh(account).balance == 0
    assert_ledger_consistent()


def test_the_same_key_on_two_accounts_at_once_posts_one_and_refuses_the_other(member_a, member_b):
    accounts = [member_a.account, member_b.account] * 5

    results = run_together([lambda account=account: earn(account, 10, key="shared") for account in accounts])

    winner = LedgerEntry.objects.get(idempotency_key="shared")
    for account, (outcome, value) in zip(accounts, results, strict=True):
        if account.pk == winner.account_id:
            assert outcome == "ok" and value.entry.pk == winner.pk
        else:
            assert isinstance(value, ledger.IdempotencyConflict)
    assert_ledger_consistent()


def test_racing_reversals_of_one_entry_take_it_back_once(member_a):
    account = member_a.account
    purchase = earn(account, 100)
    earn(account, 500)

    results = run_together([lambda i=i: take_back(purchase.entry, key=f"return-{i}") for i in range(10)])

    outcomes = Counter(outcome if outcome == "ok" else type(value).__name__ for outcome, value in results)
    assert outcomes == {"ok": 1, "NothingToReverse": 9}
    assert fresh(account).balance == 500
    assert_ledger_consistent()


# --- (d) Expiry runs at once --------------------------------------------------------------


@pytest.fixture
def due_lots(program_a, member_a, member_b, member_of_b):
    """Fifteen accounts with lots due to expire (some partly spent), and some not yet due."""
    accounts = [member_a.account, member_b.account, member_of_b.account]
    accounts += [
        member_create(program=program_a, first_name=f"M{n}", last_name="Due").account for n in range(12)
    ]
    due = {}
    for n, account in enumerate(accounts):
        for lot in range(4):
            earn(account, 10 + lot, expires_at=T0 + days(1 + lot))
        earn(account, 99, expires_at=T0 + days(400))
        if n % 3 == 0:
            redeem(account, 15)  # the first lot empty, the second partly spent
        due[account.pk] = 46 - (15 if n % 3 == 0 else 0)
    return due


def _check_expired_once(due):
    expire_entries = LedgerEntry.objects.filter(kind=Kind.EXPIRE)
    per_account = Counter(expire_entries.values_list("account", flat=True))
    assert per_account == dict.fromkeys(due, 1)
    for account in PointsAccount.objects.filter(pk__in=due):
        assert account.lifetime_expired == due[account.pk]
        assert account.balance == 99
    expired_lots = PointLot.objects.filter(expiry_entry__isnull=False)
    assert not expired_lots.filter(expires_at__gt=T0 + days(5)).exists()
    assert not PointLot.objects.filter(expires_at__lte=T0 + days(5), remaining__gt=0).exists()
    assert_ledger_consistent()


def test_expiry_runs_at_once_expire_each_lot_exactly_once(due_lots):
    results = run_together(
        [
            lambda size=size: ledger.expire_due_lots(now=T0 + days(5), batch_size=size)
            for size in (3, 7, 2, 50)
        ]
    )

    reports = [value for outcome, value in results if outcome == "ok"]
    assert len(reports) == 4, results
    all_entries = [entry for report in reports for entry in report.entries]
    assert len(all_entries) == len(set(all_entries)) == len(due_lots)
    assert (
        sum(report.lots for report in reports) == PointLot.objects.filter(expiry_entry__isnull=False).count()
    )
    assert -sum(report.points for report in reports) == sum(due_lots.values())
    _check_expired_once(due_lots)


def test_expiry_racing_redemptions_and_credits_stays_consistent(due_lots):
    accounts = list(PointsAccount.objects.filter(pk__in=due_lots))

    def spend(n):
        outcome = Counter()
        for i, account in enumerate(accounts):
            try:
                redeem(account, 20, key=f"spend-{n}-{i}", now=T0 + days(5))
                outcome["spent"] += 1
            except InsufficientPoints:
                outcome["refused"] += 1
            earn(account, 5, key=f"top-up-{n}-{i}", now=T0 + days(5), expires_at=None)
        return outcome

    results = run_together(
        [
            lambda: ledger.expire_due_lots(now=T0 + days(5), batch_size=4),
            lambda: ledger.expire_due_lots(now=T0 + days(5), batch_size=9),
            lambda: spend(1),
            lambda: spend(2),
        ]
    )

    assert [outcome for outcome, _ in results] == ["ok"] * 4, results
    per_account = Counter(LedgerEntry.objects.filter(kind=Kind.EXPIRE).values_list("account", flat=True))
    assert set(per_account.values()) <= {1}
    assert not PointLot.objects.filter(expires_at__lte=T0 + days(5), remaining__gt=0).exists()
    assert_ledger_consistent()


# --- (e) A run that dies midway ------------------------------------------------------------------


def test_an_expiry_run_that_dies_midway_and_is_rerun_expires_each_lot_once(due_lots):
    real_batch = ledger._run_batch
    calls = Counter()

    def dies_in_the_second_batch(*args, **kwargs):
        result = real_batch(*args, **kwargs)  # the batch's writes are done, not committed
        calls["batches"] += 1
        if calls["batches"] == 2:
            raise RuntimeError("worker killed")
        return result

    with mock.patch.object(ledger, "_run_batch", dies_in_the_second_batch), pytest.raises(RuntimeError):
        ledger.expire_due_lots(now=T0 + days(5), batch_size=8)

    # The first batch committed whole, the second not at all.
    half_done = LedgerEntry.objects.filter(kind=Kind.EXPIRE).count()
    assert 0 < half_done < len(due_lots)
    assert_ledger_consistent()

    rerun = ledger.expire_due_lots(now=T0 + days(5), batch_size=8)
    again = ledger.expire_due_lots(now=T0 + days(5), batch_size=8)

    assert rerun.accounts == len(due_lots) - half_done
    assert (again.accounts, again.lots) == (0, 0)
    _check_expired_once(due_lots)


# --- (f) One run on several connections ------------------------------------------------------


def test_a_run_on_several_workers_runs_batches_at_once_and_expires_each_lot_once(due_lots):
    real_batch = ledger._run_batch
    # The first two batches wait for each other: they can only meet if two connections
    # hold a batch transaction at the same moment.
    both_open = threading.Barrier(2, timeout=30)
    backends, lock = [], threading.Lock()

    def batch_meeting_another(*args, **kwargs):
        with lock:
            backends.append(connection.connection.info.backend_pid)
            first_two = len(backends) <= 2
        if first_two:
            both_open.wait()
        return real_batch(*args, **kwargs)

    with mock.patch.object(ledger, "_run_batch", batch_meeting_another):
        report = ledger.expire_due_lots(now=T0 + days(5), batch_size=4, workers=3)

    assert len(backends) > 2
    assert 1 < len(set(backends)) <= 3
    assert connection.connection.info.backend_pid not in backends  # the caller only scans
    assert report.accounts == len(report.entries) == len(set(report.entries)) == len(due_lots)
    assert report.lots == PointLot.objects.filter(expiry_entry__isnull=False).count()
    assert -report.points == sum(due_lots.values())
    _check_expired_once(due_lots)


def test_runs_on_several_workers_at_once_expire_each_lot_exactly_once(due_lots):
    results = run_together(
        [
            lambda size=size, n=workers: ledger.expire_due_lots(now=T0 + days(5), batch_size=size, workers=n)
            for size, workers in ((3, 2), (5, 3), (2, 2))
        ]
    )

    reports = [value for outcome, value in results if outcome == "ok"]
    assert len(reports) == 3, results
    all_entries = [entry for report in reports for entry in report.entries]
    assert len(all_entries) == len(set(all_entries)) == len(due_lots)
    assert -sum(report.points for report in reports) == sum(due_lots.values())
    _check_expired_once(due_lots)


def test_a_worker_that_fails_stops_the_run_and_a_rerun_expires_each_lot_once(due_lots):
    real_batch = ledger._run_batch
    calls, lock = Counter(), threading.Lock()

    def dies_in_the_third_batch(*args, **kwargs):
        result = real_batch(*args, **kwargs)  # the batch's writes are done, not committed
        with lock:
            calls["batches"] += 1
            third = calls["batches"] == 3
        if third:
            raise RuntimeError("worker killed")
        return result

    with mock.patch.object(ledger, "_run_batch", dies_in_the_third_batch), pytest.raises(RuntimeError):
        ledger.expire_due_lots(now=T0 + days(5), batch_size=4, workers=2)

    # The failure is raised to the caller, the run stops short, and every batch committed
    # whole or not at all.
    half_done = LedgerEntry.objects.filter(kind=Kind.EXPIRE).count()
    assert 0 < half_done < len(due_lots)
    assert_ledger_consistent()

    rerun = ledger.expire_due_lots(now=T0 + days(5), batch_size=4, workers=2)
    again = ledger.expire_due_lots(now=T0 + days(5), batch_size=4, workers=2)

    assert rerun.accounts == len(due_lots) - half_done
    assert (again.accounts, again.lots) == (0, 0)
    _check_expired_once(due_lots)
