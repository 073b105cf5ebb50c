"""Each fraud signal with its reason and weight; a score at the threshold holds, IP alone does not."""

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.models import LedgerEntry, Member
from referrals import services
from referrals.fraud import normalise_email, phone_key
from referrals.models import DeviceSighting, Referral, ReferralPolicy
from tests.referrals.conftest import buy, join

Status = Referral.Status


def _qualify(referee, amount="30.00"):
    buy(referee, amount)
    return Referral.objects.get(referee=referee)


def _kinds(referral):
    return {signal.kind: signal for signal in referral.signals.all()}


def _paid(referral) -> int:
    return LedgerEntry.objects.filter(subject_id=referral.pk, subject_type__model="referral").count()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Alice.Smith+promo@GMail.com", "alicesmith@gmail.com"),
        ("a.l.i.c.e.smith@googlemail.com", "alicesmith@gmail.com"),
        ("alice+x@outlook.com", "alice@outlook.com"),
        ("alice.smith+x@example.com", "alice.smith+x@example.com"),  # unknown provider: only the case
        ("Alice.Smith@Example.com", "alice.smith@example.com"),
    ],
)
def test_emails_are_normalised_as_their_provider_delivers(given, expected):
    assert normalise_email(given) == expected


def test_phones_compare_by_their_last_digits():
    assert phone_key("+33 6 12 34 56 78") == phone_key("06.12.34.56.78") == "612345678"
    assert phone_key("12 34") == ""


def test_self_referral_by_normalised_email_holds(code_a, program_a, member_a):
    Member.objects.filter(pk=member_a.pk).update(email="alice.member@gmail.com")
    referral = _qualify(join(program_a, code_a, email="AliceMember+2@googlemail.com"))
    signal = _kinds(referral)["self_email"]
    assert signal.weight == 100 and "same mailbox" in signal.reason
    assert referral.status == Status.HELD and referral.fraud_score == 100 and _paid(referral) == 0


def test_self_referral_by_phone_holds(code_a, program_a, member_a):
    Member.objects.filter(pk=member_a.pk).update(phone="+33 6 12 34 56 78")
    referral = _qualify(join(program_a, code_a, phone="06 12 34 56 78"))
    assert set(_kinds(referral)) == {"self_phone"} and referral.status == Status.HELD


def test_a_referee_signing_up_from_the_referrers_browser_holds(code_a, program_a, member_a):
    services.sighting_record(member=member_a, device_id="dev-1", ip="192.0.2.1", context="page")
    referral = _qualify(join(program_a, code_a, meta={"device_id": "dev-1", "ip": "198.51.100.7"}))
    kinds = _kinds(referral)
    assert set(kinds) == {"shared_device"} and "browser the referrer used" in kinds["shared_device"].reason
    assert referral.status == Status.HELD


def test_two_referees_from_one_browser_hold_the_second(code_a, program_a):
    first = _qualify(join(program_a, code_a, meta={"device_id": "dev-9"}))
    second = _qualify(join(program_a, code_a, meta={"device_id": "dev-9"}))
    assert first.status == Status.REWARDED
    assert set(_kinds(second)) == {"shared_device"} and second.status == Status.HELD


def test_a_shared_ip_alone_does_not_hold(code_a, program_a, member_a):
    services.sighting_record(member=member_a, device_id="dev-a", ip="203.0.113.5", context="page")
    referral = _qualify(join(program_a, code_a, meta={"device_id": "dev-b", "ip": "203.0.113.5"}))
    kinds = _kinds(referral)
    assert set(kinds) == {"shared_ip"} and kinds["shared_ip"].weight == 20
    assert "weak on its own" in kinds["shared_ip"].reason
    assert referral.status == Status.REWARDED and _paid(referral) == 2


def test_a_shared_ip_outside_the_window_is_no_signal(code_a, program_a, member_a):
    long_ago = timezone.now() - timedelta(days=3)
    services.sighting_record(
        member=member_a, device_id="dev-a", ip="203.0.113.5", context="page", now=long_ago
    )
    referral = _qualify(join(program_a, code_a, meta={"ip": "203.0.113.5"}))
    assert _kinds(referral) == {}


def test_a_shared_ip_with_another_signal_holds(code_a, program_a, member_a):
    services.sighting_record(member=member_a, device_id="", ip="203.0.113.5", context="page")
    referral = _qualify(join(program_a, code_a, email="x@mailinator.com", meta={"ip": "203.0.113.5"}))
    assert set(_kinds(referral)) == {"shared_ip", "throwaway_email"}
    assert referral.fraud_score == 60 and referral.status == Status.HELD


def test_velocity_more_than_n_sign_ups_a_day_is_a_signal(code_a, program_a, policy_a):
    ReferralPolicy.objects.filter(pk=policy_a.pk).update(velocity_per_day=2, weight_velocity=50)
    referees = [join(program_a, code_a) for _ in range(3)]
    referral = _qualify(referees[-1])
    signal = _kinds(referral)["velocity"]
    assert "3 sign-ups" in signal.reason and referral.status == Status.HELD
    # Two a day is within the limit: with only two, no velocity signal.
    Referral.objects.filter(referee=referees[0]).update(signed_up_at=timezone.now() - timedelta(days=2))
    assert "velocity" not in _kinds(_qualify(referees[1]))


def test_a_circular_referral_is_a_signal(code_a, program_a, member_a, member_b, agent_a):
    # B was referred by A; now B's code is given for A (by hand: A joined before).
    Referral.objects.create(
        program=program_a,
        referrer=member_b,
        referee=member_a,
        code=services.code_for_member(member=member_b),
        channel="agent",
        signed_up_at=member_a.created_at,
    )
    referral = services.referral_attribute_by_agent(
        referee=member_b, code=code_a, user=agent_a, reason="Asked"
    )
    referral = _qualify(member_b)
    assert set(_kinds(referral)) == {"circular"} and referral.status == Status.HELD


def test_a_ring_of_referrals_is_a_signal_and_a_chain_is_not(code_a, program_a, member_a, agent_a):
    # A referred B, B referred C; then C's code is given for A (by hand: A joined first).
    b = join(program_a, code_a)
    c = join(program_a, services.code_for_member(member=b).code)
    d = join(program_a, services.code_for_member(member=c).code)  # a chain A -> B -> C -> D: no ring
    assert "circular" not in _kinds(_qualify(d))

    services.referral_attribute_by_agent(
        referee=member_a, code=services.code_for_member(member=c).code, user=agent_a, reason="Asked"
    )
    referral = _qualify(member_a)
    signal = _kinds(referral)["circular"]
    path = " → ".join(m.membership_number for m in (member_a, b, c))
    assert f"({path})" in signal.reason and "ring" in signal.reason
    assert referral.status == Status.HELD and _paid(referral) == 0


def test_the_monthly_cap_holds_the_referral_over_it(code_a, program_a, policy_a):
    ReferralPolicy.objects.filter(pk=policy_a.pk).update(cap_per_month=2)
    paid = [_qualify(join(program_a, code_a)) for _ in range(2)]
    assert [r.status for r in paid] == [Status.REWARDED, Status.REWARDED]
    third = _qualify(join(program_a, code_a))
    assert "this month" in _kinds(third)["cap"].reason and third.status == Status.HELD


def test_the_lifetime_cap_holds_too(code_a, program_a, policy_a):
    ReferralPolicy.objects.filter(pk=policy_a.pk).update(cap_per_month=None, cap_lifetime=1)
    first = _qualify(join(program_a, code_a))
    # Last year's reward still counts against a lifetime cap.
    Referral.objects.filter(pk=first.pk).update(rewarded_at=timezone.now() - timedelta(days=400))
    second = _qualify(join(program_a, code_a))
    assert "lifetime cap" in _kinds(second)["cap"].reason and second.status == Status.HELD


def test_a_throwaway_domain_is_a_signal_below_the_threshold(code_a, program_a):
    referral = _qualify(join(program_a, code_a, email="someone@yopmail.com"))
    assert set(_kinds(referral)) == {"throwaway_email"} and referral.fraud_score == 40
    assert referral.status == Status.REWARDED


def test_a_signal_weighted_zero_is_switched_off(code_a, program_a, member_a, policy_a):
    ReferralPolicy.objects.filter(pk=policy_a.pk).update(weight_self_email=0)
    referral = _qualify(join(program_a, code_a, email=member_a.email.upper()))
    assert _kinds(referral) == {} and referral.status == Status.REWARDED


def test_the_referrers_page_visit_and_sign_up_are_recorded_once_a_day(member_a, program_a):
    for _ in range(3):
        services.sighting_record(member=member_a, device_id="dev", ip="192.0.2.1", context="page")
    assert DeviceSighting.objects.filter(member=member_a).count() == 1
    joined = join(program_a, meta={"device_id": "d2", "ip": "192.0.2.2"})
    assert DeviceSighting.objects.filter(member=joined, context="signup").count() == 1
