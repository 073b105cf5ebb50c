"""The portal in a real browser on a phone-sized screen, with JavaScript switched off.

Sign up from a share link, land on the home page, and redeem a reward using the
keyboard only: nothing essential needs JavaScript or a mouse.
"""

import pytest

from loyalty.models import Member, Redemption
from tests.portal.conftest import earn, reward

# The live server reads committed rows, so these tests commit (and flush afterwards).
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("transactional_db")]

PHONE = {"width": 390, "height": 844}
NEW_PASSWORD = "Tulip-meadow-4417"


@pytest.fixture
def phone(live_server, chromium):
    context = chromium.new_context(base_url=live_server.url, viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def fits_the_screen(page) -> bool:
    """No sideways scrolling of the page itself (wide tables scroll inside their own box)."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_a_visitor_joins_from_a_share_link_and_redeems_with_the_keyboard(
    phone,
    program_a,
    screenshot,
):
    page = phone
    page.goto(f"/me/join/{program_a.slug}/?ref=FRIEND42")
    assert page.get_by_label("Referral code (optional)").input_value() == "FRIEND42"
    page.get_by_label("Referral code (optional)").fill("")  # no referrals receiver judges it here
    page.get_by_label("First name").fill("Dana")
    page.get_by_label("Last name").fill("Scully")
    page.get_by_label("Email").fill("dana@example.com")
    page.locator("#id_password1").fill(NEW_PASSWORD)
    page.get_by_label("Password again").fill(NEW_PASSWORD)
    screenshot(page, "portal-signup-phone")
    with page.expect_navigation():
        page.get_by_role("button", name="Join").click()

    assert page.get_by_role("heading", name="Hello Dana").is_visible()
    assert fits_the_screen(page)
    member = Member.objects.get(email="dana@example.com")
    earn(member, 500, key="fund")
    prize = reward(program_a, name="Cinema ticket", cost=120)

    page.goto("/me/rewards/")
    screenshot(page, "portal-rewards-phone")
    assert fits_the_screen(page)
    # Keyboard only: tab to the reward's button and press Enter, then confirm the same way.
    link = page.get_by_role("link", name="Redeem Cinema ticket")
    for _ in range(40):
        page.keyboard.press("Tab")
        if link.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("the Redeem link is not reachable with Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    confirm = page.get_by_role("button", name="Confirm: spend 120 points")
    confirm.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")

    assert page.get_by_role("heading", name="Cinema ticket").is_visible()
    screenshot(page, "portal-redemption-phone")
    assert fits_the_screen(page)
    page.goto("/me/")
    screenshot(page, "portal-home-phone")
    assert fits_the_screen(page)
    for path in ("/me/history/", "/me/where-did-my-points-go/", "/me/profile/", "/me/redemptions/"):
        page.goto(path)
        screenshot(page, "portal" + path.rstrip("/").replace("/me", "").replace("/", "-") + "-phone")
        assert fits_the_screen(page), path
    redemption = Redemption.objects.get()
    assert (redemption.member_id, redemption.reward_id, redemption.channel) == (member.pk, prize.pk, "portal")
    member.account.refresh_from_db()
    assert member.account.balance == 380
