"""Journey: a friend joins through member A's share link, buys through the API, both are rewarded.

The purchase goes through the real integration API (a program key, POST /api/v1/events/ with an
Idempotency-Key) against the live server, as a till would send it.
"""

import uuid

import pytest
import requests

from loyalty.api.services import api_key_create
from loyalty.models import Member
from referrals.models import Referral
from tests.referrals.conftest import code_a, policy_a  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

NEW_PASSWORD = "Tulip-meadow-4417"


def test_friend_joins_by_share_link_buys_through_the_api_both_see_the_reward(
    browser_page,
    chromium,
    live_server,
    log_in,
    screenshot,
    member_a,
    policy_a,  # noqa: F811
    code_a,  # noqa: F811
):
    # Every browser here comes from 127.0.0.1: the shared-address signal would hold every referral.
    policy_a.weight_shared_ip = 0
    policy_a.save(update_fields=["weight_shared_ip"])

    # The friend follows the share link and signs up.
    page = browser_page
    page.goto(f"/r/{code_a}")
    assert page.get_by_label("Referral code (optional)").input_value() == code_a
    page.get_by_label("First name").fill("Dana")
    page.get_by_label("Last name").fill("Scully")
    page.get_by_label("Email").fill("dana@example.com")
    page.locator("#id_password1").fill(NEW_PASSWORD)
    page.get_by_label("Password again").fill(NEW_PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Join").click()
    friend = Member.objects.get(email="dana@example.com")
    referral = Referral.objects.get(referee=friend)
    assert referral.referrer_id == member_a.pk

    # A qualifying purchase through the API, with a real key.
    _, raw = api_key_create(program=member_a.program, name="till-1")
    response = requests.post(
        f"{live_server.url}/api/v1/events/",
        json={
            "member": friend.membership_number,
            "type": "purchase",
            "reference": "TILL-1-0001",
            "amount": "45.00",
        },
        headers={"Authorization": f"Api-Key {raw}", "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
    referral.refresh_from_db()
    assert referral.status == Referral.Status.REWARDED, referral.status

    # The friend sees the welcome bonus in the portal...
    page.goto("/me/history/")
    assert "250" in page.content()
    screenshot(page, "journey-referral-friend-history")
    page.goto("/me/referrals/")
    screenshot(page, "journey-referral-friend-referrals")

    # ...and member A sees the friend rewarded on their referrals page, with the points.
    context = chromium.new_context(base_url=live_server.url)
    referrer = log_in(context.new_page(), "member-a")
    referrer.goto("/me/referrals/")
    assert referrer.get_by_text("Rewarded").first.is_visible()
    assert "500" in referrer.content()
    screenshot(referrer, "journey-referral-referrer")
    member_a.account.refresh_from_db()
    assert member_a.account.balance == 500
    context.close()
