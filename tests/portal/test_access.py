"""Every portal page against the whole cast, with member A's objects (and program B's reward).

Enumerates the portal namespace through the resolver, so a new page cannot escape.
Member B asking for member A's redemption, or member A for another program's
reward, gets a 404: never someone else's data.
"""

import pytest
from django.urls import get_resolver, reverse

from tests.portal.conftest import earn, redeem, reward

# name -> kwargs key (None: no arguments)
PAGES = {
    "home": None,
    "signup": "program",
    "profile": None,
    "history": None,
    "explain": None,
    "rewards": None,
    "redeem": "reward",
    "redemption_list": None,
    "redemption_detail": "redemption",
    "redemption_cancel": "redemption",
}
POSTS = {"redemption_cancel"}  # asked with POST (an empty body); the rest with GET
STAFF_AND_OUTSIDERS = {"agent": 403, "outsider": 403, "supervisor": 403, "admin": 403}


def test_every_portal_url_is_listed():
    names = {
        pattern.name
        for include in get_resolver().url_patterns
        if getattr(include, "namespace", None) == "portal"
        for pattern in include.url_patterns
    }
    assert names == set(PAGES)


@pytest.fixture
def objects(member_a, member_b, member_of_b):
    earn(member_a, 500, key="a")
    prize = reward(member_a.program)
    return {
        "program": {"slug": member_a.program.slug},
        "reward": {"pk": prize.pk},
        "redemption": {"pk": redeem(member_a, prize, key="r").pk},
    }


def _expected(name):
    if name == "signup":
        signed_in = dict.fromkeys(["member_a", "member_b", *STAFF_AND_OUTSIDERS], 302)
        return {"anonymous": 200, **signed_in}
    # Member B is of the same program: A's reward is on offer to B too, A's redemption is not.
    member_b = 404 if PAGES[name] == "redemption" else 200
    member_a = 302 if name in POSTS else 200  # done, back to the redemption's page
    return {"anonymous": 302, "member_a": member_a, "member_b": member_b, **STAFF_AND_OUTSIDERS}


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_of_the_cast_gets_what_its_role_allows(
    name, objects, client, member_a, member_b, agent_a, agent_b, supervisor, admin_user
):
    key = PAGES[name]
    url = reverse(f"portal:{name}", kwargs=objects[key] if key else None)
    cast = {
        "anonymous": None,
        "member_a": member_a.user,
        "member_b": member_b.user,
        "agent": agent_a,
        "outsider": agent_b,
        "supervisor": supervisor,
        "admin": admin_user,
    }
    answers = {}
    for who, user in cast.items():
        client.logout()
        if user is not None:
            client.force_login(user)
        response = client.post(url) if name in POSTS else client.get(url)
        answers[who] = response.status_code
        if who == "anonymous" and response.status_code == 302:
            assert response.url.startswith(reverse("login"))
    assert answers == _expected(name)


def test_another_programs_reward_is_a_404_for_every_page_that_takes_one(login, member_a, member_of_b):
    earn(member_a, 5000, key="a")
    elsewhere = reward(member_of_b.program, name="Their mug", cost=10)
    client = login(member_a.user)
    url = reverse("portal:redeem", kwargs={"pk": elsewhere.pk})
    assert client.get(url).status_code == 404
    assert client.post(url, {"idempotency_key": "6f1c1a4e-8d5b-4a57-9f9e-3f8a3d7c2b10"}).status_code == 404
    assert not elsewhere.redemptions.exists()


def test_another_members_redemption_never_shows_its_voucher(login, member_a, member_b):
    earn(member_b, 500, key="b")
    theirs = redeem(member_b, reward(member_b.program), key="rb")
    client = login(member_a.user)
    assert client.get(reverse("portal:redemption_detail", kwargs={"pk": theirs.pk})).status_code == 404
    listing = client.get(reverse("portal:redemption_list")).content.decode()
    assert f"redemption-{theirs.pk}" not in listing
    exported = client.get(reverse("portal:redemption_list"), {"_export": "csv"}).content.decode()
    assert len(exported.strip().splitlines()) == 1  # the header only


def test_pages_without_ids_show_only_the_members_own_account(login, member_a, member_b):
    earn(member_b, 4321, key="b", reason="Bob's shopping")
    client = login(member_a.user)
    for name in ("home", "history", "explain"):
        body = client.get(reverse(f"portal:{name}")).content.decode()
        assert "Bob&#x27;s shopping" not in body and "Bob's shopping" not in body and "4,321" not in body
    assert "Bob" not in client.get(reverse("portal:profile")).content.decode()
