"""The held queue's review: approve posts the rewards once, reject needs a reason; both through the page."""

import pytest
from django.urls import reverse

from loyalty.models import LedgerEntry, Member
from referrals import services
from referrals.models import Referral
from tests.referrals.conftest import buy, join

Status = Referral.Status


@pytest.fixture
def held(code_a, program_a, member_a):
    Member.objects.filter(pk=member_a.pk).update(email="alice@gmail.com")
    referee = join(program_a, code_a, email="a.lice+new@gmail.com")
    buy(referee, "40.00")
    referral = Referral.objects.get(referee=referee)
    assert referral.status == Status.HELD
    return referral


def _paid(referral):
    return LedgerEntry.objects.filter(subject_id=referral.pk, subject_type__model="referral")


def test_approving_a_held_referral_posts_both_rewards_once(held, agent_a):
    first = services.referral_approve(referral=held, user=agent_a, reason="Sisters sharing a mailbox")
    again = services.referral_approve(referral=held, user=agent_a)
    assert first.referral.status == Status.REWARDED and not first.replayed and again.replayed
    assert _paid(held).count() == 2
    entry = first.referral.referrer_entry
    assert entry.actor == agent_a and entry.source == "agent" and entry.points == 500
    held.refresh_from_db()
    assert held.reviewed_by == agent_a and held.decision_reason == "Sisters sharing a mailbox"


def test_rejecting_needs_a_reason_and_pays_nothing(held, agent_a):
    with pytest.raises(services.ApplicationError) as refused:
        services.referral_reject(referral=held, user=agent_a, reason="  ")
    assert refused.value.field == "reason"
    result = services.referral_reject(referral=held, user=agent_a, reason="Same person, two accounts")
    assert result.referral.status == Status.REJECTED and not _paid(held).exists()
    assert services.referral_reject(referral=held, user=agent_a, reason="Again").replayed
    with pytest.raises(services.IllegalTransition):
        services.referral_approve(referral=held, user=agent_a)
    held.refresh_from_db()
    assert held.decision_reason == "Same person, two accounts"


def test_a_pending_referral_cannot_be_approved(code_a, program_a, agent_a):
    referral = join(program_a, code_a).referral
    with pytest.raises(services.IllegalTransition):
        services.referral_approve(referral=referral, user=agent_a)


def test_the_review_page_shows_the_signals_side_by_side_and_approves(held, login, agent_a):
    client = login(agent_a)
    page = client.get(reverse("referrals:detail", kwargs={"pk": held.pk}))
    body = page.content.decode()
    assert page.status_code == 200
    assert (
        "Same email as the referrer" in body and "alice@gmail.com" in body and "a.lice+new@gmail.com" in body
    )
    assert 'id="history"' in body and "Approve and pay" in body
    url = reverse("referrals:action", kwargs={"pk": held.pk, "action": "approve"})
    assert client.post(url, {"approve-reason": ""}).status_code == 302
    assert client.post(url, {"approve-reason": ""}).status_code == 302  # a double click: nothing more
    assert _paid(held).count() == 2
    held.refresh_from_db()
    assert held.status == Status.REWARDED
    assert held.history.filter(history_user=agent_a, status=Status.REWARDED).exists()


def test_rejecting_on_the_page_without_a_reason_is_a_form_error(held, login, agent_a):
    client = login(agent_a)
    url = reverse("referrals:action", kwargs={"pk": held.pk, "action": "reject"})
    refused = client.post(url, {"reject-reason": ""})
    assert refused.status_code == 400 and "This field is required" in refused.content.decode()
    held.refresh_from_db()
    assert held.status == Status.HELD
    assert client.post(url, {"reject-reason": "Duplicate account"}).status_code == 302
    held.refresh_from_db()
    assert held.status == Status.REJECTED


def test_an_illegal_move_is_a_409_not_a_500(held, login, agent_a):
    services.referral_reject(referral=held, user=agent_a, reason="Duplicate account")
    client = login(agent_a)
    url = reverse("referrals:action", kwargs={"pk": held.pk, "action": "approve"})
    assert client.post(url, {"approve-reason": ""}).status_code == 409


def test_an_unknown_action_is_a_404(held, login, agent_a):
    url = reverse("referrals:action", kwargs={"pk": held.pk, "action": "explode"})
    assert login(agent_a).post(url).status_code == 404


def test_an_agent_of_another_program_cannot_review(held, login, agent_b):
    url = reverse("referrals:action", kwargs={"pk": held.pk, "action": "approve"})
    assert login(agent_b).post(url, {"approve-reason": ""}).status_code == 404
    held.refresh_from_db()
    assert held.status == Status.HELD
