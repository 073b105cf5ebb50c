"""Browser fixtures (a pytest plugin, loaded by the root conftest): one headless Chromium per
session, a fresh page per test on the live server.

Browser tests carry the `browser` marker (skipped without Playwright and Chromium,
failing instead under STRICT_SERVICES=1). Typical journey:

    @pytest.mark.browser
    def test_it_does_something(browser_page, log_in, agent_a, screenshot):
        page = log_in(browser_page, "agent-a")
        ...
        screenshot(page, "something")
"""

import os
from pathlib import Path

import pytest

from conftest import PASSWORD

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"


@pytest.fixture(scope="session")
def chromium():
    # Playwright's sync API keeps an asyncio loop running in this thread while the
    # browser lives, so Django sees every ORM call from the test (fixtures, flush)
    # as "from async code" and refuses it. The calls are in fact synchronous; allow
    # them for exactly the browser's lifetime.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_page(live_server, chromium):
    """A page in a fresh browser context whose relative URLs go to the live server.

    `live_server` comes first so that, at the end of the session, Chromium closes
    before the server stops and no request is left half-served.
    """
    context = chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def log_in():
    """Sign in through the real login form; returns the page on the landing screen."""

    def _log_in(page, username, password=PASSWORD):
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
        return page

    return _log_in


@pytest.fixture
def screenshot():
    """Save a full-page screenshot to artifacts/screenshots/<name>.png (git-ignored)."""

    def _screenshot(page, name):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _screenshot
