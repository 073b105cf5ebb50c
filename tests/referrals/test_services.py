"""Attribution, qualification and rewards (through the ledger, once), whatever channel posts the purchase."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from loyalty import ledger
from loyalty.errors import ApplicationError
from loyalty.models import LedgerEntry, Member
from referrals import services
from referrals.models import Referral, ReferralCode, ReferralPolicy
from tests.referrals.conftest import buy, join

Status = Referral.Status


def _bonus_entries(referral):
    return LedgerEntry.objects.filter(subject_id=referral.pk, subject_type__model="referral").order_by("id")


# --- Codes -----------------------------------------------------------------------------


def test_a_member_gets_one_short_readable_code(member_a, policy_a):
    first = services.code_for_member(member=member_a)
    again = services.code_for_member(member=member_a)
    assert first.pk == again.pk and ReferralCode.objects.count() == 1
    assert first.code.startswith("A") and len(first.code) <= 9
    assert not set(first.code) & set("01OIL")


# --- Attribution ---------------------------------------------------------------------------


def test_signing_up_with_a_code_creates_a_pending_referral(code_a, member_a, program_a):
    referee = join(program_a, code_a.lower(), meta={"ip": "10.0.0.9", "user_agent": "UA", "device_id": "d1"})
    referral = referee.referral
    assert referral.referrer == member_a and referral.status == Status.PENDING
    assert (referral.signup_ip, referral.signup_user_agent, referral.signup_device_id) == (
        "10.0.0.9",
        "UA",
        "d1",
    )
    assert referral.channel == "portal"


@pytest.mark.parametrize("bad", ["NOPE1234", "  "])
def test_an_unknown_code_refuses_the_sign_up_on_its_field(bad, code_a, program_a):
    before = Member.objects.count()
    if not bad.strip():
        join(program_a, bad)  # blank means no code: the member joins
        assert Member.objects.count() == before + 1
        return
    with pytest.raises(ApplicationError) as refused:
        join(program_a, bad)
    assert refused.value.field == "referral_code"
    assert Member.objects.count() == before  # rolled back with the sign-up


def test_an_inactive_code_or_referrer_is_refused(code_a, member_a, program_a):
    ReferralCode.objects.filter(code=code_a).update(is_active=False)
    with pytest.raises(ApplicationError, match="not valid"):
        join(program_a, code_a)
    ReferralCode.objects.filter(code=code_a).update(is_active=True)
    Member.objects.filter(pk=member_a.pk).update(status=Member.Status.SUSPENDED)
    with pytest.raises(ApplicationError, match="not valid"):
        join(program_a, code_a)


def test_a_code_of_another_program_is_refused(code_a, program_b):
    with pytest.raises(ApplicationError, match="another program") as refused:
        join(program_b, code_a)
    assert refused.value.field == "referral_code"
    assert not Referral.objects.exists()


def test_a_program_without_an_active_policy_has_no_referral_scheme(code_a, policy_a, program_a):
    ReferralPolicy.objects.filter(pk=policy_a.pk).update(is_active=False)
    with pytest.raises(ApplicationError, match="no referral scheme"):
        join(program_a, code_a)


def test_an_agent_attributes_by_hand_once_with_a_reason(code_a, program_a, member_b, agent_a, member_a):
    with pytest.raises(ApplicationError) as no_reason:
        services.referral_attribute_by_agent(referee=member_b, code=code_a, user=agent_a, reason=" ")
    assert no_reason.value.field == "reason"
    referral = services.referral_attribute_by_agent(
        referee=member_b, code=code_a, user=agent_a, reason="Ticket 42: forgot the code"
    )
    assert referral.channel == "agent" and referral.attributed_by == agent_a
    # The window counts from the day the member joined, not from the attribution.
    assert referral.signed_up_at == member_b.created_at
    other = services.code_for_member(member=join(program_a)).code
    with pytest.raises(services.AlreadyReferred):
        services.referral_attribute_by_agent(referee=member_b, code=other, user=agent_a, reason="Second try")
    assert Referral.objects.get(referee=member_b).referrer == member_a  # the first one stands


def test_a_member_cannot_refer_themselves_by_hand(code_a, member_a, agent_a):
    with pytest.raises(ApplicationError, match="own referral code"):
        services.referral_attribute_by_agent(referee=member_a, code=code_a, user=agent_a, reason="Because")


def test_the_database_keeps_one_referral_per_member(code_a, program_a, member_a):
    referee = join(program_a, code_a)
    with pytest.raises(IntegrityError), transaction.atomic():
        Referral.objects.create(
            program=program_a,
            referrer=member_a,
            referee=referee,
            code=referee.referral.code,
            channel="agent",
            signed_up_at=referee.created_at,
        )


def test_attributing_by_hand_qualifies_on_an_earlier_purchase(code_a, program_a, member_b, agent_a, member_a):
    buy(member_b, "35.00")
    referral = services.referral_attribute_by_agent(
        referee=member_b, code=code_a, user=agent_a, reason="Friend joined at the till"
    )
    assert referral.status == Status.REWARDED and referral.qualifying_amount == Decimal("35.00")


# --- Qualification -------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["api", "import"])
def test_a_qualifying_purchase_rewards_both_sides_through_the_ledger(source, code_a, program_a, member_a):
    referee = join(program_a, code_a)
    buy(referee, "25.00", source=source, reference="SALE-1")
    referral = Referral.objects.get(referee=referee)
    assert referral.status == Status.REWARDED and referral.fraud_score == 0
    assert referral.qualifying_reference == "SALE-1"
    referrer_entry, referee_entry = referral.referrer_entry, referral.referee_entry
    assert referrer_entry.account.member == member_a and referrer_entry.points == 500
    assert referee_entry.account.member == referee and referee_entry.points == 250
    assert referrer_entry.idempotency_key == f"referral:{referral.pk}:referrer"
    assert referee_entry.idempotency_key == f"referral:{referral.pk}:referee"
    assert referrer_entry.subject == referral and referrer_entry.kind == "bonus"
    member_a.account.refresh_from_db()
    assert member_a.account.balance == 500
    assert ledger.reconcile() == []


def test_a_replayed_purchase_rewards_once(code_a, program_a, member_a):
    referee = join(program_a, code_a)
    buy(referee, "25.00", reference="SALE-1")
    replay = buy(referee, "25.00", reference="SALE-1")
    assert replay.posting.replayed
    buy(referee, "40.00", reference="SALE-2")  # a second purchase qualifies nothing more
    referral = Referral.objects.get(referee=referee)
    assert _bonus_entries(referral).count() == 2
    member_a.account.refresh_from_db()
    assert member_a.account.balance == 500


def test_paying_again_with_the_same_keys_returns_the_entries_already_made(code_a, program_a):
    referee = join(program_a, code_a)
    buy(referee, "25.00")
    referral = Referral.objects.select_related("referrer", "referee").get(referee=referee)
    # As if a retry after a crash reached the payment again: the ledger returns the originals.
    with transaction.atomic():
        services._pay(
            referral,
            ReferralPolicy.objects.get(),
            actor=services.AUTO_ACTOR,
            source="system",
            now=referral.rewarded_at,
        )
    assert _bonus_entries(referral).count() == 2


def test_a_purchase_below_the_minimum_does_not_qualify(code_a, program_a):
    referee = join(program_a, code_a)
    buy(referee, "19.99")
    assert Referral.objects.get(referee=referee).status == Status.PENDING
    buy(referee, "20.00")  # the first purchase at the minimum does
    assert Referral.objects.get(referee=referee).status == Status.REWARDED


def test_a_purchase_after_the_window_does_not_qualify(code_a, program_a):
    referee = join(program_a, code_a)
    Referral.objects.filter(referee=referee).update(signed_up_at=referee.created_at - timedelta(days=31))
    buy(referee, "100.00")
    referral = Referral.objects.get(referee=referee)
    assert referral.status == Status.PENDING and referral.qualified_at is None


def test_other_activities_and_other_members_purchases_do_not_qualify(code_a, program_a, member_b):
    from tests.loyalty.factories import EarningRuleFactory

    EarningRuleFactory.fixed_activity(program=program_a, code="survey", points=10)
    referee = join(program_a, code_a)
    from loyalty.earning import activity_post
    from loyalty.ledger import Actor

    activity_post(member=referee, code="survey", reference="S1", source="api", actor=Actor(label="api:t"))
    buy(member_b, "90.00")
    assert Referral.objects.get(referee=referee).status == Status.PENDING


def test_a_failing_qualification_never_breaks_the_purchase(code_a, program_a, monkeypatch):
    referee = join(program_a, code_a)

    def broken(**kwargs):
        raise RuntimeError("signal store down")

    monkeypatch.setattr("referrals.services.fraud_findings", broken)
    result = buy(referee, "50.00", reference="SALE-9")
    assert result.posting is not None and LedgerEntry.objects.filter(reference="SALE-9").exists()
    assert Referral.objects.get(referee=referee).status == Status.PENDING


def test_a_ledger_refusal_leaves_the_referral_qualified_for_an_agent(code_a, program_a, monkeypatch, agent_a):
    referee = join(program_a, code_a)
    real_credit = ledger.credit

    def refusing(**kwargs):
        if kwargs.get("subject") is not None:  # the referral's rewards, not the purchase
            raise ledger.LedgerError("Account closed.")
        return real_credit(**kwargs)

    monkeypatch.setattr("loyalty.ledger.credit", refusing)
    buy(referee, "50.00")
    referral = Referral.objects.get(referee=referee)
    assert referral.status == Status.QUALIFIED and not _bonus_entries(referral).exists()
    monkeypatch.setattr("loyalty.ledger.credit", real_credit)
    result = services.referral_approve(referral=referral, user=agent_a)
    assert result.referral.status == Status.REWARDED and _bonus_entries(referral).count() == 2
