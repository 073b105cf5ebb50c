"""Races on PostgreSQL: the first valid referral wins, and rewards are paid once however many ask at once."""

import pytest

from loyalty.models import LedgerEntry, Member
from referrals import services
from referrals.models import Referral
from tests.loyalty.test_ledger_concurrency import run_together
from tests.referrals.conftest import buy, join

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _rewards(referral):
    return LedgerEntry.objects.filter(subject_id=referral.pk, subject_type__model="referral")


def test_two_agents_attributing_one_member_at_once_make_one_referral(code_a, program_a, member_b, agent_a):
    other_code = services.code_for_member(member=join(program_a)).code
    results = run_together(
        [
            lambda code=code: services.referral_attribute_by_agent(
                referee=member_b, code=code, user=agent_a, reason="Phone call"
            )
            for code in (code_a, other_code)
        ]
    )
    outcomes = sorted(kind for kind, _ in results)
    assert outcomes == ["error", "ok"]
    error = next(value for kind, value in results if kind == "error")
    assert isinstance(error, services.AlreadyReferred)
    assert Referral.objects.filter(referee=member_b).count() == 1


def test_racing_purchases_reward_once(code_a, program_a):
    referee = join(program_a, code_a)
    results = run_together(
        [lambda n=n: buy(Member.objects.get(pk=referee.pk), "30.00", reference=f"R-{n}") for n in range(4)]
    )
    assert all(kind == "ok" for kind, _ in results)
    referral = Referral.objects.get(referee=referee)
    assert referral.status == Referral.Status.REWARDED and _rewards(referral).count() == 2


def test_racing_approvals_pay_once(code_a, program_a, member_a, agent_a, supervisor):
    Member.objects.filter(pk=member_a.pk).update(email="alice@gmail.com")
    referee = join(program_a, code_a, email="alice+1@gmail.com")
    buy(referee, "30.00")
    referral = Referral.objects.get(referee=referee)
    assert referral.status == Referral.Status.HELD
    results = run_together(
        [
            lambda user=user: services.referral_approve(referral=referral, user=user)
            for user in (agent_a, supervisor)
        ]
    )
    assert all(kind == "ok" for kind, _ in results)
    assert sorted(value.replayed for _, value in results) == [False, True]
    assert _rewards(referral).count() == 2
