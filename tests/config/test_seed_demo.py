from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from loyalty import ledger
from loyalty.demo import DEMO_PASSWORD
from loyalty.models import LedgerEntry, Member, PointLot


def seed(**kwargs) -> str:
    out = StringIO()
    call_command("seed_demo", "--force", "--months", "3", stdout=out, **kwargs)
    return out.getvalue()


@pytest.fixture
def small_demo(db, monkeypatch):
    # The full demo is 550 members; the same code with fewer keeps the test quick.
    from loyalty import demo

    specs = tuple(demo.ProgramSpec(**{**spec.__dict__, "members": 12}) for spec in demo.PROGRAMS)
    monkeypatch.setattr(demo, "PROGRAMS", specs)
    return seed()


def test_it_prints_a_login_for_every_role(small_demo):
    for username in ("admin", "supervisor", "agent", "agent.sky", "member"):
        assert username in small_demo
    assert DEMO_PASSWORD in small_demo
    user = get_user_model().objects.get(username="member")
    assert user.check_password(DEMO_PASSWORD) and Member.objects.filter(user=user).exists()


def test_it_makes_history_that_reconciles(small_demo):
    assert Member.objects.count() == 24
    kinds = set(LedgerEntry.objects.values_list("kind", flat=True))
    assert {"earn", "redeem", "activate"} <= kinds
    assert PointLot.objects.filter(pending=True).exists() or "activate" in kinds
    assert ledger.reconcile() == []


def test_it_sets_up_each_programs_rules_and_posts_through_them(small_demo):
    from loyalty.models import EarningRule, Promotion, Redemption, Reward, Tier

    for slug in ("bean-there", "skyhigh"):
        assert EarningRule.objects.filter(program__slug=slug, activity_code="purchase").exists()
        assert Tier.objects.filter(program__slug=slug).count() >= 3
        assert Reward.objects.filter(program__slug=slug).count() >= 3
        assert Promotion.objects.filter(program__slug=slug).exists()
    # Purchases went through the earning service: their breakdown names the rule.
    purchase = LedgerEntry.objects.filter(kind="earn").exclude(breakdown={}).first()
    assert purchase.breakdown["activity"] == "purchase" and purchase.breakdown["rule_id"]
    assert Redemption.objects.exists()


def test_running_it_twice_changes_nothing(small_demo):
    counts = (Member.objects.count(), LedgerEntry.objects.count(), get_user_model().objects.count())
    again = seed()
    assert "already seeded, left unchanged" in again
    assert (Member.objects.count(), LedgerEntry.objects.count(), get_user_model().objects.count()) == counts


def test_it_refuses_without_debug_or_force(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_demo", stdout=StringIO())
    assert not Member.objects.exists()
