"""Journey: a missing-points dispute from the phone call to the corrected balance.

An agent opens the ticket for member A, investigates with the explain view, asks for an
adjustment above the program's approval threshold and answers the member; the supervisor
approves it; the member's portal shows the corrected balance and the reply; the supervisor's
audit browser shows the trail (who asked, who approved, the ledger entry).
"""

import pytest

from disputes.models import Dispute
from tests.portal.conftest import earn

pytestmark = pytest.mark.browser

REPLY = "We found the purchase of 3 March: 800 points are on their way to you."


def test_agent_opens_dispute_supervisor_approves_member_sees_balance_and_reply(
    browser_page, chromium, live_server, log_in, screenshot, member_a, agent_a, supervisor
):
    earn(member_a, 100, key="fund")
    threshold = member_a.program.adjustment_approval_threshold
    points = threshold + 300
    number = member_a.membership_number

    # The agent opens the ticket and investigates.
    agent = log_in(browser_page, "agent-a")
    agent.goto(f"/disputes/new/{number}/")
    agent.get_by_label("Category").select_option(label="Missing points")
    agent.get_by_label("Subject").fill("Purchase of 3 March earned nothing")
    agent.get_by_label("Description").fill(
        "The member phoned: a 80 EUR purchase is missing from the history."
    )
    with agent.expect_navigation():
        agent.get_by_role("button", name="Open").first.click()
    dispute = Dispute.objects.get(member=member_a)
    assert agent.url.endswith(f"/disputes/{dispute.pk}/")
    with agent.expect_navigation():
        agent.get_by_role("link", name="Explain this balance").first.click()
    assert "100" in agent.content()
    screenshot(agent, "journey-dispute-explain")
    agent.goto(f"/disputes/{dispute.pk}/")

    # Above the threshold: the adjustment waits for a supervisor.
    agent.locator("#id_points").fill(str(points))
    agent.locator("#id_reason").fill("Missing purchase of 3 March")
    with agent.expect_navigation():
        agent.get_by_role("button", name="Correct the points").click()
    adjustment = dispute.adjustments.get()
    assert adjustment.status == "pending"
    agent.locator("#id_comment-body").fill(REPLY)
    with agent.expect_navigation():
        agent.get_by_role("button", name="Send").click()
    member_a.account.refresh_from_db()
    assert member_a.account.balance == 100  # nothing moves before the approval

    # The supervisor approves it from the ticket.
    boss_context = chromium.new_context(base_url=live_server.url)
    boss = log_in(boss_context.new_page(), "supervisor")
    boss.goto(f"/disputes/{dispute.pk}/")
    with boss.expect_navigation():
        boss.locator("#adjustments").get_by_role("button", name="Approve").click()
    adjustment.refresh_from_db()
    assert adjustment.status == "applied"
    member_a.account.refresh_from_db()
    assert member_a.account.balance == 100 + points

    # The member sees the corrected balance and the reply in the portal.
    member_context = chromium.new_context(base_url=live_server.url)
    member = log_in(member_context.new_page(), "member-a")
    member.goto("/me/")
    assert f"{100 + points:,}" in member.content() or str(100 + points) in member.content()
    screenshot(member, "journey-dispute-member-home")
    member.goto(f"/me/disputes/{dispute.pk}/")
    assert member.get_by_text(REPLY).is_visible()
    screenshot(member, "journey-dispute-member-ticket")
    member_context.close()

    # The supervisor's audit browser shows the trail for this member.
    boss.goto(f"/supervisor/audit/?member={number}")
    page_text = boss.content()
    assert "agent-a" in page_text and "supervisor" in page_text
    assert f"ledger entry #{adjustment.entry_id}" in page_text
    screenshot(boss, "journey-dispute-audit")
    boss_context.close()
