"""seed_demo's referrals: every state, held ones with signals, rewards through the ledger; twice is once."""

from io import StringIO

import pytest
from django.core.management import call_command

from loyalty import ledger
from loyalty.models import LedgerEntry
from referrals.models import Referral, ReferralClick, ReferralCode, ReferralPolicy, ReferralSignal


def _seed() -> str:
    out = StringIO()
    call_command("seed_demo", "--force", "--months", "3", stdout=out)
    return out.getvalue()


@pytest.fixture
def small_demo(db, monkeypatch):
    from loyalty import demo

    specs = tuple(demo.ProgramSpec(**{**spec.__dict__, "members": 40}) for spec in demo.PROGRAMS)
    monkeypatch.setattr(demo, "PROGRAMS", specs)
    # Only this app's part is under test here; the other apps' demos have their own tests.
    for app in ("disputes", "agents"):
        monkeypatch.setattr(f"{app}.demo.seed", lambda **kwargs: None)
    return _seed()


def _snapshot():
    return (
        list(Referral.objects.order_by("id").values_list("id", "status", "referrer_id", "referee_id")),
        ReferralClick.objects.count(),
        ReferralCode.objects.count(),
        ReferralSignal.objects.count(),
        LedgerEntry.objects.count(),
    )


def test_the_demo_has_policies_codes_clicks_and_referrals_in_every_state(small_demo):
    assert ReferralPolicy.objects.count() == 2
    assert ReferralCode.objects.count() == 80 and ReferralClick.objects.exists()
    statuses = set(Referral.objects.values_list("status", flat=True))
    assert {"pending", "rewarded", "held", "rejected"} <= statuses
    held = Referral.objects.filter(status="held").first()
    assert held.signals.exists() and held.fraud_score >= 50
    rewarded = Referral.objects.filter(status="rewarded").first()
    assert rewarded.referrer_entry.subject == rewarded
    assert ledger.reconcile() == []


def test_running_the_demo_twice_changes_nothing(small_demo):
    before = _snapshot()
    again = _seed()
    assert "referrals already seeded" in again
    assert _snapshot() == before
