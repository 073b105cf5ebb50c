"""A hypothesis state machine drives the ledger with random postings, reversals,
refunds, replays and jobs on a simulated clock, and after every step checks the
ledger invariants and a plain Python model of what each balance should be.

Runs on whichever database is configured. Each example runs inside a savepoint
that is rolled back at its end, so examples never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from loyalty import ledger
from loyalty.ledger import Actor, IdempotencyConflict, InsufficientPoints, LedgerError, NothingToReverse
from loyalty.models import LedgerEntry, PointLot, PointsAccount, Program
from loyalty.services import member_create
from tests.loyalty.ledger_helpers import T0, Kind, Source, ledger_problems

ACTOR = Actor.job("state-machine")


@dataclass
class ModelAccount:
    pk: int
    allows_debt: bool
    balance: int = 0
    pending: int = 0


@dataclass
class ModelEntry:
    """What the model knows of an entry that can be reversed."""

    pk: int
    account: ModelAccount
    moved: int  # points it added (+) or took (-)
    redemption: bool = False
    reversed: int = 0
    expired: int = 0  # points of a credit's lot that expired: no reversal takes them again
    # For a credit still waiting: when it becomes spendable and how much of it is left.
    available_from: object = None
    pending_left: int = 0

    @property
    def left(self) -> int:
        return max(abs(self.moved) - self.reversed - self.expired, 0)


@dataclass
class Posted:
    """A successful write, to be replayed: how to post it again and what it made."""

    post: object
    entry_id: int
    conflicting: object = None  # the same key with a different payload


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.keys = itertools.count(1)
        self.clock = T0
        monthly = Program.objects.create(name="Monthly", slug="sm-monthly", expiry_months=1)
        debts = Program.objects.create(
            name="Debts",
            slug="sm-debts",
            pending_days=2,
            expiry_policy=Program.ExpiryPolicy.END_OF_NTH_YEAR,
            negative_balance_policy=Program.NegativeBalancePolicy.ALLOW_DEBT,
            time_zone="Europe/Paris",
        )
        self.accounts: list[ModelAccount] = []
        self.db_accounts: list[PointsAccount] = []
        for n, program in enumerate([monthly, monthly, debts]):
            account = member_create(program=program, first_name=f"S{n}", last_name="Machine").account
            self.db_accounts.append(account)
            self.accounts.append(ModelAccount(pk=account.pk, allows_debt=program is debts))
        self.credits: list[ModelEntry] = []
        self.debits: list[ModelEntry] = []
        self.posted: list[Posted] = []
        self.entries = 0  # how many entries the model expects in the ledger

    def teardown(self):
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def key(self) -> str:
        return f"sm-{next(self.keys)}"

    # --- Postings --------------------------------------------------------------

    @rule(
        who=st.integers(0, 2),
        points=st.integers(1, 200),
        kind=st.sampled_from([Kind.EARN, Kind.BONUS]),
        waits=st.one_of(st.none(), st.integers(0, 72)),
        expiry=st.one_of(st.just("policy"), st.none(), st.integers(0, 60 * 24)),
    )
    def credit(self, who, points, kind, waits, expiry):
        model, account, key = self.accounts[who], self.db_accounts[who], self.key()
        kwargs = {"kind": kind, "reason": "Purchase", "actor": ACTOR, "source": Source.API}
        if waits is not None:
            kwargs["available_from"] = self.clock + timedelta(hours=waits)
        if expiry != "policy":
            kwargs["expires_at"] = None if expiry is None else self.clock + timedelta(hours=expiry)

        def post(points=points):
            return ledger.credit(
                account=account, points=points, idempotency_key=key, now=self.clock, **kwargs
            )

        posting = post()
        lot = PointLot.objects.get(entry=posting.entry)
        entry = ModelEntry(pk=posting.entry.pk, account=model, moved=points)
        if lot.available_from > self.clock:
            model.pending += points
            entry.available_from, entry.pending_left = lot.available_from, points
        else:
            model.balance += points
        # When it waits is the program's rule: earned points wait its pending days.
        expected_wait = kwargs.get("available_from") or self.clock + timedelta(
            days=2 if model.allows_debt and kind == Kind.EARN else 0
        )
        assert lot.available_from == expected_wait
        self.credits.append(entry)
        self.entries += 1
        self.posted.append(Posted(post, posting.entry.pk, conflicting=lambda: post(points + 1)))

    @rule(who=st.integers(0, 2), points=st.integers(1, 300))
    def redeem(self, who, points):
        model, account, key = self.accounts[who], self.db_accounts[who], self.key()

        def post():
            return ledger.debit(
                account=account,
                points=points,
                reason="Reward",
                actor=ACTOR,
                idempotency_key=key,
                source=Source.PORTAL,
                allow_debt=True,  # a redemption never goes below zero anyway
                now=self.clock,
            )

        if points > max(model.balance, 0):
            with pytest.raises(InsufficientPoints):
                post()
            return
        posting = post()
        model.balance -= points
        self.debits.append(ModelEntry(pk=posting.entry.pk, account=model, moved=-points, redemption=True))
        self.entries += 1
        self.posted.append(Posted(post, posting.entry.pk))

    @rule(
        who=st.integers(0, 2),
        points=st.integers(-150, 150).filter(bool),
        allow_debt=st.booleans(),
    )
    def adjust(self, who, points, allow_debt):
        model, account, key = self.accounts[who], self.db_accounts[who], self.key()

        def post(reason="Correction"):
            return ledger.adjust(
                account=account,
                points=points,
                reason=reason,
                actor=ACTOR,
                idempotency_key=key,
                allow_debt=allow_debt,
                now=self.clock,
            )

        if points < 0 and -points > max(model.balance, 0) and not (allow_debt and model.allows_debt):
            with pytest.raises(InsufficientPoints):
                post()
            return
        posting = post()
        model.balance += points
        entry = ModelEntry(pk=posting.entry.pk, account=model, moved=points)
        (self.credits if points > 0 else self.debits).append(entry)
        self.entries += 1
        self.posted.append(Posted(post, posting.entry.pk, conflicting=lambda: post("Another correction")))

    @precondition(lambda self: self.credits or self.debits)
    @rule(
        data=st.data(),
        of_credit=st.booleans(),
        points=st.one_of(st.none(), st.integers(1, 200)),
        allow_debt=st.booleans(),
    )
    def reverse(self, data, of_credit, points, allow_debt):
        entry = data.draw(
            st.sampled_from((self.credits if of_credit else self.debits) or self.credits or self.debits)
        )
        model, key = entry.account, self.key()
        db_entry = LedgerEntry.objects.get(pk=entry.pk)

        def post():
            return ledger.reverse(
                entry=db_entry,
                points=points,
                reason="Returned",
                actor=ACTOR,
                idempotency_key=key,
                source=Source.AGENT,
                allow_debt=allow_debt,
                now=self.clock,
            )

        amount = entry.left if points is None else points
        if entry.left == 0:
            with pytest.raises(NothingToReverse):
                post()
            return
        if amount > entry.left:
            with pytest.raises(LedgerError, match="left to reverse"):
                post()
            return
        spendable_credit = entry.moved > 0 and not entry.pending_left
        if spendable_credit and amount > max(model.balance, 0) and not (allow_debt and model.allows_debt):
            with pytest.raises(InsufficientPoints):
                post()
            return
        posting = post()
        self._reversed(entry, amount)
        self.entries += 1
        self.posted.append(Posted(post, posting.entry.pk))

    @precondition(lambda self: any(entry.redemption for entry in self.debits))
    @rule(data=st.data())
    def refund(self, data):
        entry = data.draw(st.sampled_from([entry for entry in self.debits if entry.redemption]))
        db_entry, key = LedgerEntry.objects.get(pk=entry.pk), self.key()

        def post():
            return ledger.refund(
                entry=db_entry,
                reason="Cancelled",
                actor=ACTOR,
                idempotency_key=key,
                source=Source.AGENT,
                now=self.clock,
            )

        if entry.left == 0:
            with pytest.raises(NothingToReverse):
                post()
            return
        posting = post()
        assert posting.entry.points == entry.left
        self._reversed(entry, entry.left)
        self.entries += 1
        self.posted.append(Posted(post, posting.entry.pk))

    def _reversed(self, entry: ModelEntry, amount: int) -> None:
        entry.reversed += amount
        if entry.moved < 0:
            entry.account.balance += amount
        elif entry.pending_left:
            entry.pending_left -= amount
            entry.account.pending -= amount
        else:
            entry.account.balance -= amount

    # --- Jobs on the simulated clock ----------------------------------------------

    @rule(hours=st.integers(0, 24 * 45), batch_size=st.integers(1, 4))
    def expire(self, hours, batch_size):
        self.clock += timedelta(hours=hours)
        due = dict(
            PointLot.objects.filter(
                account__in=[a.pk for a in self.accounts],
                pending=False,
                remaining__gt=0,
                expires_at__lte=self.clock,
            )
            .values("account")
            .annotate(total=Sum("remaining"))
            .values_list("account", "total")
        )

        expiring = dict(
            PointLot.objects.filter(
                account__in=[a.pk for a in self.accounts],
                pending=False,
                remaining__gt=0,
                expires_at__lte=self.clock,
            ).values_list("entry", "remaining")
        )

        report = ledger.expire_due_lots(now=self.clock, batch_size=batch_size)

        assert (report.accounts, -report.points) == (len(due), sum(due.values()))
        for entry in self.credits:
            entry.expired += expiring.get(entry.pk, 0)
        for model in self.accounts:
            model.balance -= due.get(model.pk, 0)
        self.entries += report.accounts

    @rule(hours=st.integers(0, 24 * 4), batch_size=st.integers(1, 4))
    def activate(self, hours, batch_size):
        self.clock += timedelta(hours=hours)
        due = [e for e in self.credits if e.pending_left and e.available_from <= self.clock]

        report = ledger.activate_pending_lots(now=self.clock, batch_size=batch_size)

        assert report.points == sum(e.pending_left for e in due)
        assert report.accounts == len({e.account.pk for e in due})
        for entry in due:
            entry.account.balance += entry.pending_left
            entry.account.pending -= entry.pending_left
            entry.pending_left = 0
        self.entries += report.accounts

    # --- Replays ------------------------------------------------------------------------

    @precondition(lambda self: self.posted)
    @rule(data=st.data())
    def replay(self, data):
        posted = data.draw(st.sampled_from(self.posted))

        again = posted.post()

        assert (again.replayed, again.entry.pk) == (True, posted.entry_id)

    @precondition(lambda self: any(p.conflicting for p in self.posted))
    @rule(data=st.data())
    def replay_with_another_payload(self, data):
        posted = data.draw(st.sampled_from([p for p in self.posted if p.conflicting]))

        with pytest.raises(IdempotencyConflict):
            posted.conflicting()

    # --- After every step -------------------------------------------------------------

    @invariant()
    def the_books_balance(self):
        assert ledger_problems(self.db_accounts) == []

    @invariant()
    def the_model_agrees(self):
        actual = {
            pk: (balance, pending)
            for pk, balance, pending in PointsAccount.objects.filter(
                pk__in=[a.pk for a in self.accounts]
            ).values_list("pk", "balance", "pending")
        }
        assert actual == {a.pk: (a.balance, a.pending) for a in self.accounts}
        assert LedgerEntry.objects.filter(account__in=actual).count() == self.entries
        for model in self.accounts:
            assert model.balance >= 0 or model.allows_debt


def test_the_ledger_keeps_its_invariants_after_every_step(db):
    # Modest by default, to keep the suite quick; for a soak run raise them, e.g.
    # LEDGER_STATE_MACHINE_EXAMPLES=400 LEDGER_STATE_MACHINE_STEPS=60 (passes, about 18 minutes).
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=int(os.environ.get("LEDGER_STATE_MACHINE_EXAMPLES", "20")),
            stateful_step_count=int(os.environ.get("LEDGER_STATE_MACHINE_STEPS", "25")),
            deadline=None,
            database=None,  # no example database written into the working tree
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
