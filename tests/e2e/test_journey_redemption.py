"""Journey: a member redeems a reward in the portal, an agent fulfils it, the member sees the voucher."""

import pytest

from loyalty.models import Redemption
from tests.portal.conftest import earn, reward

pytestmark = pytest.mark.browser


def test_member_redeems_agent_fulfils_member_sees_the_voucher(
    browser_page, chromium, live_server, log_in, screenshot, member_a, agent_a
):
    earn(member_a, 500, key="fund")
    reward(member_a.program, name="Cinema ticket", cost=120)

    # The member redeems in the portal.
    page = log_in(browser_page, "member-a")
    page.goto("/me/rewards/")
    with page.expect_navigation():
        page.get_by_role("link", name="Redeem Cinema ticket").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Confirm: spend 120 points").click()
    assert page.get_by_role("heading", name="Cinema ticket").is_visible()
    redemption = Redemption.objects.get(member=member_a)

    # The agent approves and fulfils it from the back-office, in their own browser.
    agent_context = chromium.new_context(base_url=live_server.url)
    agent = log_in(agent_context.new_page(), "agent-a")
    agent.goto(f"/redemptions/{redemption.pk}/")
    with agent.expect_navigation():
        agent.locator("#action-approve").get_by_role("button", name="Approve").click()
    with agent.expect_navigation():
        agent.locator("#action-fulfil").get_by_role("button", name="Mark fulfilled").click()
    redemption.refresh_from_db()
    assert redemption.status == Redemption.Status.FULFILLED
    assert redemption.voucher_code
    assert agent.get_by_text(redemption.voucher_code, exact=True).is_visible()
    screenshot(agent, "journey-redemption-agent")
    agent_context.close()

    # The member sees the voucher on their redemption page and the balance after the spend.
    page.goto(f"/me/redemptions/{redemption.pk}/")
    assert page.locator(".portal-voucher").inner_text() == redemption.voucher_code
    assert page.get_by_text("Fulfilled").first.is_visible()
    screenshot(page, "journey-redemption-member")
    page.goto("/me/")
    assert page.get_by_text("380").first.is_visible()
    screenshot(page, "journey-redemption-member-home")
