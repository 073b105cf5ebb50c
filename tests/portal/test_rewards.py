"""The catalogue, the confirmed redemption (once, however often it is sent) and the member's redemptions."""

import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from loyalty import redemptions
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, Redemption
from tests.loyalty.factories import TierFactory
from tests.portal.conftest import JOB, balance, earn, redeem, reward

REWARDS = reverse("portal:rewards")


def redeem_url(prize):
    return reverse("portal:redeem", kwargs={"pk": prize.pk})


def confirmation_key(page) -> str:
    match = re.search(r'name="idempotency_key" value="([0-9a-f-]{36})"', page.content.decode())
    assert match, "the confirmation page carries a hidden key"
    return match.group(1)


@pytest.fixture
def funded(member_a):
    earn(member_a, 500, key="fund")
    return member_a


def test_the_catalogue_shows_what_is_on_offer_to_this_member_and_highlights_what_they_can_afford(
    login, funded, program_b
):
    program = funded.program
    gold = TierFactory(program=program, name="Gold", rank=2, threshold=5000)
    now = timezone.now()
    cheap = reward(program, name="Coffee", cost=100)
    dear = reward(program, name="Weekend away", cost=9000)
    hidden = [
        reward(program, name="Retired mug", cost=10, is_active=False),
        reward(program, name="Next month's tote", cost=10, active_from=now + timedelta(days=30)),
        reward(program, name="Last year's scarf", cost=10, active_until=now - timedelta(days=1)),
        reward(program, name="Gold lounge", cost=10, min_tier=gold),
        reward(program_b, name="Other brand's cap", cost=10),
    ]

    page = login(funded.user).get(REWARDS)

    html = page.content.decode()
    assert "Coffee" in html and "Weekend away" in html
    for prize in hidden:
        assert prize.name not in html and prize.name.replace("'", "&#x27;") not in html
    assert f'id="reward-{cheap.pk}"' in html
    assert re.search(rf'portal-reward--affordable" id="reward-{cheap.pk}"', html)
    assert not re.search(rf'portal-reward--affordable" id="reward-{dear.pk}"', html)
    assert "8,500 more points needed" in html
    assert redeem_url(cheap) in html and redeem_url(dear) not in html


def test_a_reward_above_the_members_tier_cannot_be_reached_by_its_url(login, funded):
    gold = TierFactory(program=funded.program, name="Gold", rank=2, threshold=5000)
    lounge = reward(funded.program, name="Gold lounge", cost=10, min_tier=gold)
    client = login(funded.user)

    assert client.get(redeem_url(lounge)).status_code == 404
    assert client.post(redeem_url(lounge), {"idempotency_key": str(uuid.uuid4())}).status_code == 404
    assert balance(funded) == 500


def test_the_confirmation_page_changes_nothing_and_carries_a_fresh_key(login, funded):
    prize = reward(funded.program, cost=120)
    client = login(funded.user)

    first, second = client.get(redeem_url(prize)), client.get(redeem_url(prize))

    assert first.status_code == 200
    assert "Confirm: spend 120 points" in first.content.decode()
    assert "380" in first.content.decode()  # the balance after
    assert confirmation_key(first) != confirmation_key(second)
    assert balance(funded) == 500 and not Redemption.objects.exists()


def test_confirming_redeems_through_the_ledger_from_the_portal(login, funded):
    prize = reward(funded.program, cost=120)
    client = login(funded.user)
    key = confirmation_key(client.get(redeem_url(prize)))

    response = client.post(redeem_url(prize), {"idempotency_key": key})

    redemption = Redemption.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("portal:redemption_detail", kwargs={"pk": redemption.pk})
    assert (redemption.member, redemption.reward, redemption.points) == (funded, prize, 120)
    assert redemption.channel == "portal" and redemption.requested_by == funded.user
    assert redemption.debit_entry.source == "portal"
    assert redemption.debit_entry.actor_label == f"user:{funded.user.username}"
    assert balance(funded) == 380


def test_a_double_submitted_confirmation_debits_once(login, funded):
    prize = reward(funded.program, cost=120, stock=5)
    client = login(funded.user)
    key = confirmation_key(client.get(redeem_url(prize)))

    first = client.post(redeem_url(prize), {"idempotency_key": key})
    second = client.post(redeem_url(prize), {"idempotency_key": key}, follow=True)

    assert first.status_code == 302 and second.status_code == 200
    assert Redemption.objects.count() == 1
    assert LedgerEntry.objects.filter(account=funded.account, kind="redeem").count() == 1
    assert balance(funded) == 380
    prize.refresh_from_db()
    assert prize.stock == 4
    assert "already confirmed this redemption" in second.content.decode()
    assert second.redirect_chain[-1][0] == first.url


def test_a_key_sent_for_another_reward_redeems_nothing_more(login, funded):
    coffee, cake = (
        reward(funded.program, name="Coffee", cost=100),
        reward(funded.program, name="Cake", cost=50),
    )
    client = login(funded.user)
    key = confirmation_key(client.get(redeem_url(coffee)))
    client.post(redeem_url(coffee), {"idempotency_key": key})

    response = client.post(redeem_url(cake), {"idempotency_key": key})

    assert response.status_code == 409
    assert "for another reward" in response.content.decode()
    assert confirmation_key(response) != key
    assert Redemption.objects.count() == 1 and balance(funded) == 400


def test_not_enough_points_is_explained_and_changes_nothing(login, member_a):
    earn(member_a, 50, key="small")
    prize = reward(member_a.program, cost=120)
    client = login(member_a.user)

    page = client.get(redeem_url(prize))
    assert "You need 120 points" in page.content.decode()
    assert 'name="idempotency_key"' not in page.content.decode()

    response = client.post(redeem_url(prize), {"idempotency_key": str(uuid.uuid4())})
    assert response.status_code == 409
    assert balance(member_a) == 50 and not Redemption.objects.exists()


def test_a_missing_or_forged_key_is_refused(login, funded):
    prize = reward(funded.program, cost=120)
    client = login(funded.user)

    for data in ({}, {"idempotency_key": "not-a-uuid"}):
        response = client.post(redeem_url(prize), data)
        assert response.status_code == 400
        assert "confirm again" in response.content.decode()
    assert not Redemption.objects.exists() and balance(funded) == 500


def test_a_suspended_member_is_told_why(login, funded):
    funded.status = "suspended"
    funded.save()
    prize = reward(funded.program, cost=120)

    response = login(funded.user).post(redeem_url(prize), {"idempotency_key": str(uuid.uuid4())})

    assert response.status_code == 409
    assert "suspended" in response.content.decode()
    assert not Redemption.objects.exists()


# --- My redemptions -----------------------------------------------------------------


def test_the_member_sees_status_and_voucher_code_of_their_redemptions(login, funded):
    prize = reward(funded.program, name="Cinema ticket", cost=100)
    done = redeem(funded, prize, key="one")
    redemptions.redemption_approve(redemption=done, actor=JOB)
    done = redemptions.redemption_fulfil(redemption=done, actor=JOB).redemption
    waiting = redeem(funded, prize, key="two")
    refused = redeem(funded, prize, key="three")
    redemptions.redemption_reject(redemption=refused, actor=Actor.job("t"), reason="Cinema closed for works")
    client = login(funded.user)

    listing = client.get(reverse("portal:redemption_list")).content.decode()
    assert done.voucher_code and done.voucher_code in listing
    assert "Fulfilled" in listing and "Requested" in listing and "Rejected" in listing

    detail = client.get(reverse("portal:redemption_detail", kwargs={"pk": done.pk})).content.decode()
    assert done.voucher_code in detail
    timeline = detail[detail.index("What happened") :]
    assert timeline.index("Requested") < timeline.index("Approved") < timeline.index("Fulfilled")
    assert "job:" not in detail  # who handled it stays in the back-office

    rejected = client.get(reverse("portal:redemption_detail", kwargs={"pk": refused.pk})).content.decode()
    assert "Cinema closed for works" in rejected and "Given back" in rejected

    filtered = client.get(reverse("portal:redemption_list"), {"status": "requested"}).content.decode()
    assert f"redemption-{waiting.pk}" in filtered and f"redemption-{done.pk}" not in filtered


def test_a_member_cancels_a_waiting_redemption_once_and_gets_the_points_back(login, funded):
    prize = reward(funded.program, name="Cinema ticket", cost=100, stock=3)
    waiting = redeem(funded, prize, key="one")
    before = balance(funded)
    client = login(funded.user)
    url = reverse("portal:redemption_cancel", kwargs={"pk": waiting.pk})
    assert "Cancel this redemption" in client.get(waiting_url := url.replace("cancel/", "")).content.decode()

    first = client.post(url, follow=True)
    again = client.post(url, follow=True)  # a double click

    assert "your 100 points are back" in first.content.decode()
    assert "can no longer be cancelled" in again.content.decode()
    assert balance(funded) == before + 100
    waiting.refresh_from_db()
    prize.refresh_from_db()
    assert waiting.status == Redemption.Status.CANCELLED and prize.stock == 3
    assert LedgerEntry.objects.filter(account=funded.account, kind="refund").count() == 1
    assert "Cancel this redemption" not in client.get(waiting_url).content.decode()


def test_an_approved_redemption_cannot_be_cancelled_from_the_portal(login, funded):
    approved = redeem(funded, reward(funded.program, cost=100), key="one")
    redemptions.redemption_approve(redemption=approved, actor=JOB)
    before = balance(funded)
    client = login(funded.user)

    assert client.get(reverse("portal:redemption_cancel", kwargs={"pk": approved.pk})).status_code == 405
    page = client.post(reverse("portal:redemption_cancel", kwargs={"pk": approved.pk}), follow=True)

    assert "can no longer be cancelled" in page.content.decode()
    approved.refresh_from_db()
    assert approved.status == Redemption.Status.APPROVED and balance(funded) == before


def test_an_approval_landing_between_the_page_and_the_cancel_wins(login, funded, monkeypatch):
    from loyalty.portal import views

    redemption = redeem(funded, reward(funded.program, cost=100), key="one")
    seen = Redemption.objects.get(pk=redemption.pk)  # what the member's request read: requested
    redemptions.redemption_approve(redemption=redemption, actor=JOB)  # an agent, a moment later
    monkeypatch.setattr(views.portal_selectors, "member_redemption", lambda **kwargs: seen)
    before = balance(funded)

    page = login(funded.user).post(
        reverse("portal:redemption_cancel", kwargs={"pk": redemption.pk}), follow=True
    )

    assert "it can no longer be cancelled" in page.content.decode()
    redemption.refresh_from_db()
    assert redemption.status == Redemption.Status.APPROVED and balance(funded) == before


def test_the_redemptions_csv_has_one_row_each_with_the_voucher(login, funded):
    prize = reward(funded.program, cost=100)
    done = redeem(funded, prize, key="one")
    redemptions.redemption_approve(redemption=done, actor=JOB)
    done = redemptions.redemption_fulfil(redemption=done, actor=JOB).redemption

    response = login(funded.user).get(reverse("portal:redemption_list"), {"_export": "csv"})

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    lines = response.content.decode().strip().splitlines()
    assert len(lines) == 2
    assert done.voucher_code in lines[1] and "Fulfilled" in lines[1]


def _queries(client, url, **query) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, query).status_code == 200
    return len(captured)


def test_the_redemption_list_costs_the_same_queries_for_3_or_30_rows(login, member_a):
    earn(member_a, 100_000, key="fund")
    prizes = [reward(member_a.program, name=f"Prize {n}", cost=10 + n) for n in range(3)]
    client = login(member_a.user)
    url = reverse("portal:redemption_list")
    for n in range(3):
        redeem(member_a, prizes[n % 3], key=f"small-{n}")
    small = _queries(client, url)
    for n in range(27):
        redeem(member_a, prizes[n % 3], key=f"large-{n}")
    assert _queries(client, url) == small
    assert small <= 10


def test_the_catalogue_costs_the_same_queries_for_3_or_30_rewards(login, funded):
    client = login(funded.user)
    for n in range(3):
        reward(funded.program, name=f"Small {n}", cost=10 + n)
    small = _queries(client, REWARDS)
    for n in range(27):
        reward(funded.program, name=f"Large {n}", cost=10 + n)
    assert _queries(client, REWARDS) == small
