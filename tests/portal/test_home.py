"""The member's home: balance, pending points and their date, expiry forecast, tier progress, activity."""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from loyalty.portal import selectors as portal_selectors
from tests.loyalty.factories import TierFactory
from tests.portal.conftest import earn

HOME = reverse("portal:home")


def test_a_member_sees_their_own_balance_and_activity(login, member_a, member_b):
    earn(member_a, 120, key="a1", reason="Purchase in store")
    earn(member_b, 999, key="b1", reason="Someone else's purchase")

    page = login(member_a.user).get(HOME)

    assert page.status_code == 200
    body = page.content.decode()
    assert "Purchase in store" in body and member_a.membership_number in body
    assert "Someone else" not in body and "999" not in body


def test_anonymous_visitors_are_sent_to_login(client, db):
    response = client.get(HOME)
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_staff_are_refused_the_member_portal(login, agent_a, member_a):
    assert login(agent_a).get(HOME).status_code == 403


def test_it_shows_pending_points_with_their_date_and_what_expires_soon(login, member_a):
    earn(member_a, 1000, key="soon", expires_in_days=20)
    earn(member_a, 200, key="later", expires_in_days=75)
    earn(member_a, 300, key="never", expires_at=None)
    earn(member_a, 45, key="wait", pending_days=14, reason="Online order")

    page = login(member_a.user).get(HOME)

    overview = page.context["overview"]
    assert overview.expiring == {30: 1000, 60: 1000, 90: 1200}
    html = page.content.decode()
    assert "1,500" in html  # spendable
    assert "Expire within 30 days" in html and "1,200" in html
    lot = overview.pending_lots[0]
    assert lot.points == 45
    available = lot.available_from.astimezone(member_a.program.tz)
    assert f"{available.day} {available:%b %Y}" in html and "Online order" in html


def test_it_shows_the_tier_and_the_way_to_the_next_one(login, member_a):
    silver = TierFactory(program=member_a.program, name="Silver", rank=1, threshold=100)
    TierFactory(program=member_a.program, name="Gold", rank=2, threshold=1000)
    member_a.tier = silver
    member_a.save()
    earn(member_a, 300, key="buy")

    page = login(member_a.user).get(HOME)

    progress = page.context["progress"]
    assert (progress.qualifying_points, progress.next_tier.name, progress.points_to_next) == (
        300,
        "Gold",
        700,
    )
    html = page.content.decode()
    assert 'value="30"' in html and "<progress" in html
    assert "700 more qualifying points to reach <strong>Gold</strong>" in html
    assert '<label for="tier-progress">' in html


def test_a_member_below_their_tiers_threshold_is_told_what_keeps_it(login, member_a):
    silver = TierFactory(program=member_a.program, name="Silver", rank=1, threshold=500)
    member_a.tier = silver
    member_a.save()
    earn(member_a, 200, key="buy")

    html = login(member_a.user).get(HOME).content.decode()

    assert "Earn 300 more to keep Silver at the next tier review" in html


def test_the_top_tier_has_nothing_further_to_reach(login, member_a):
    gold = TierFactory(program=member_a.program, name="Gold", rank=1, threshold=10)
    member_a.tier = gold
    member_a.save()

    html = login(member_a.user).get(HOME).content.decode()

    assert "top tier" in html and "<progress" not in html


def test_a_program_without_tiers_shows_no_tier_section(login, member_a):
    page = login(member_a.user).get(HOME)
    assert page.context["progress"] is None and "Your tier" not in page.content.decode()


def test_the_home_costs_the_same_queries_for_5_or_60_entries(login, member_a):
    TierFactory(program=member_a.program, name="Gold", rank=1, threshold=1000)
    client = login(member_a.user)
    for n in range(5):
        earn(member_a, 10, key=f"s{n}", pending_days=n % 2)
    with CaptureQueriesContext(connection) as small:
        client.get(HOME)
    for n in range(55):
        earn(member_a, 10, key=f"l{n}", pending_days=n % 2)
    with CaptureQueriesContext(connection) as large:
        client.get(HOME)
    assert len(large) == len(small) <= 14


# --- Links to pages other apps add under /me/ ----------------------------------------


def test_another_apps_page_is_linked_once_it_exists(login, member_a, settings):
    settings.ROOT_URLCONF = "tests.portal.urls_with_other_pages"

    links = {link.url: link for link in portal_selectors.other_portal_pages()}

    assert links["/me/referrals/"].url_name == "fake_referrals"
    html = login(member_a.user).get(HOME).content.decode()
    assert 'href="/me/referrals/">Invite friends' in html


def test_the_explanation_points_to_the_disputes_page_once_it_exists(login, member_a, settings, monkeypatch):
    settings.ROOT_URLCONF = "tests.portal.urls_with_other_pages"
    monkeypatch.setattr(portal_selectors, "DISPUTES_PATH", "/me/referrals/")  # the stand-in page

    html = login(member_a.user).get(reverse("portal:explain")).content.decode()

    assert 'href="/me/referrals/"' in html


def test_a_page_no_app_provides_is_not_linked_and_breaks_nothing(login, member_a, monkeypatch):
    monkeypatch.setattr(
        portal_selectors, "ELSEWHERE", (("/me/nothing-here/", "Nowhere", "A page no app provides."),)
    )

    assert portal_selectors.other_portal_pages() == []
    page = login(member_a.user).get(HOME)
    assert page.status_code == 200 and "/me/nothing-here/" not in page.content.decode()
