"""Smoke test in a real browser: the login form, the landing pages and the stylesheet."""

import re
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser


def stylesheets_load_from_this_server(page, live_server_url):
    """Every stylesheet is our own (no CDN) and actually loads."""
    hrefs = page.eval_on_selector_all("link[rel=stylesheet]", "links => links.map(l => l.href)")
    assert hrefs, "the page has no stylesheet"
    for href in hrefs:
        assert urlparse(href).netloc == urlparse(live_server_url).netloc, href
        assert page.request.get(href).status == 200, href
    # The stylesheet applies: the header is the dark bar, not an unstyled block.
    header_bg = page.eval_on_selector(".site-header", "el => getComputedStyle(el).backgroundColor")
    assert header_bg == "rgb(23, 33, 46)"
    return True


def test_the_login_page_renders_with_our_stylesheet(browser_page, live_server, screenshot):
    page = browser_page

    page.goto("/accounts/login/")

    assert page.get_by_role("heading", name="Sign in").is_visible()
    assert page.get_by_label("Username").is_visible()
    assert page.get_by_label("Password").is_visible()
    assert stylesheets_load_from_this_server(page, live_server.url)
    assert screenshot(page, "login").exists()


def test_an_agent_signs_in_through_the_form_and_lands_on_the_member_search(
    browser_page, live_server, log_in, agent_a, screenshot
):
    page = log_in(browser_page, "agent-a")

    assert re.search(r"/members/$", page.url)
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Members").get_attribute("aria-current") == "page"
    assert nav.get_by_role("link", name="My points").count() == 0
    assert page.locator(".user-menu").inner_text().startswith("agent-a")
    assert page.get_by_role("button", name="Log out").is_visible()
    assert stylesheets_load_from_this_server(page, live_server.url)
    assert screenshot(page, "agent-landing").exists()


def test_a_member_signs_in_through_the_form_and_lands_on_their_portal(
    browser_page, live_server, log_in, member_a, screenshot
):
    page = log_in(browser_page, "member-a")

    assert re.search(r"/me/$", page.url)
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="My points").get_attribute("aria-current") == "page"
    assert nav.get_by_role("link", name="Members").count() == 0
    assert screenshot(page, "member-landing").exists()


def test_logging_out_returns_to_the_login_form(browser_page, log_in, agent_a):
    page = log_in(browser_page, "agent-a")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state()

    assert re.search(r"/accounts/login/$", page.url)
    assert page.get_by_role("heading", name="Sign in").is_visible()


def test_a_wrong_password_shows_an_error_next_to_the_form(browser_page, log_in, agent_a):
    page = log_in(browser_page, "agent-a", password="not-the-password")

    assert re.search(r"/accounts/login/$", page.url)
    assert page.get_by_role("alert").inner_text().startswith("Please enter a correct username")
