"""Every page of the back-office against every role: reached, refused (403), hidden (404) or
sent to login; never a 500. A new URL in the loyalty app or the portal fails this test until listed."""

import pytest
from django.urls import get_resolver, reverse

from loyalty import ledger, redemptions
from loyalty.ledger import Actor
from loyalty.models import PointsShortfall, Reward

STAFF = "staff"  # agents, supervisors and admins of the object's program
SUPERVISOR = "supervisor"  # supervisors and admins
MEMBER = "member"
LOGGED_IN = "logged_in"
PUBLIC = "public"  # anyone signed out; a signed-in user is sent to their home

# name -> (who may GET it, how to build its kwargs)
PAGES = {
    "loyalty:member_search": (STAFF, None),
    "loyalty:member_detail": (STAFF, "member"),
    "loyalty:member_ledger": (STAFF, "member"),
    "loyalty:member_explain": (STAFF, "member"),
    "loyalty:member_balance_on": (STAFF, "member"),
    "loyalty:member_history": (STAFF, "member"),
    "loyalty:member_redeem": (STAFF, "member"),
    "loyalty:member_preview": (STAFF, "member"),
    "loyalty:member_adjust": (SUPERVISOR, "member"),
    "loyalty:redemption_list": (STAFF, None),
    "loyalty:redemption_detail": (STAFF, "redemption"),
    "loyalty:shortfall_list": (STAFF, None),
    "loyalty:shortfall_detail": (STAFF, "shortfall"),
    "portal:home": (MEMBER, None),
    "portal:signup": (PUBLIC, "program"),
    "portal:profile": (MEMBER, None),
    "portal:history": (MEMBER, None),
    "portal:explain": (MEMBER, None),
    "portal:rewards": (MEMBER, None),
    "portal:redeem": (MEMBER, "reward"),
    "portal:redemption_list": (MEMBER, None),
    "portal:redemption_detail": (MEMBER, "redemption"),
    "loyalty:no_role": (LOGGED_IN, None),
}
# Actions answer POST only; a GET must never act, whoever sends it.
POST_ONLY = {
    "loyalty:redemption_action": "redemption_action",
    "loyalty:shortfall_resolve": "shortfall",
    "portal:redemption_cancel": "redemption",
}


@pytest.fixture
def objects(member_a, agent_a):
    job = Actor.job("test")
    earned = ledger.credit(
        account=member_a.account, points=500, reason="Purchase", actor=job, idempotency_key="p", source="api"
    )
    reward = Reward.objects.create(program=member_a.program, name="Mug", cost_points=100)
    redemption = redemptions.redemption_request(
        member=member_a, reward=reward, idempotency_key="r", channel="agent", actor=job
    ).redemption
    shortfall = PointsShortfall.objects.create(
        program=member_a.program, member=member_a, entry=earned.entry, points=5, reference="RET-1"
    )
    return {
        "member": {"number": member_a.membership_number},
        "redemption": {"pk": redemption.pk},
        "program": {"slug": member_a.program.slug},
        "reward": {"pk": reward.pk},
        "redemption_action": {"pk": redemption.pk, "action": "approve"},
        "shortfall": {"pk": shortfall.pk},
    }


def _url(name, kwargs_key, objects):
    return reverse(name, kwargs=objects[kwargs_key] if kwargs_key else None)


def test_every_loyalty_url_is_in_the_matrix():
    names = {
        f"{include.namespace}:{pattern.name}"
        for include in get_resolver().url_patterns
        if getattr(include, "namespace", None) in ("loyalty", "portal")
        for pattern in include.url_patterns
    }
    assert names == set(PAGES) | set(POST_ONLY)


# What each member of the cast gets, by who the page is for. The outsider is an
# agent of program B: program A's objects are hidden from them (404), lists are
# theirs to see (scoped to their own programs).
ANSWERS = {
    STAFF: {"anonymous": 302, "agent": 200, "outsider": 404, "supervisor": 200, "admin": 200, "member": 403},
    SUPERVISOR: {
        "anonymous": 302,
        "agent": 403,
        "outsider": 403,
        "supervisor": 200,
        "admin": 200,
        "member": 403,
    },
    MEMBER: {"anonymous": 302, "agent": 403, "outsider": 403, "supervisor": 403, "admin": 403, "member": 200},
    PUBLIC: {"anonymous": 200, "agent": 302, "outsider": 302, "supervisor": 302, "admin": 302, "member": 302},
    # The page for users without a role; everyone with one is sent elsewhere.
    LOGGED_IN: {
        "anonymous": 302,
        "agent": 403,
        "outsider": 403,
        "supervisor": 403,
        "admin": 403,
        "member": 403,
    },
}


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_role_gets_the_answer_its_role_allows(
    name, objects, client, agent_a, agent_b, supervisor, admin_user, member_a
):
    who, kwargs_key = PAGES[name]
    url = _url(name, kwargs_key, objects)
    cast = {
        "anonymous": None,
        "agent": agent_a,
        "outsider": agent_b,
        "supervisor": supervisor,
        "admin": admin_user,
        "member": member_a.user,
    }
    answers = {}
    for role, user in cast.items():
        client.logout()
        if user is not None:
            client.force_login(user)
        answers[role] = client.get(url).status_code
    wanted = dict(ANSWERS[who])
    if who == STAFF and kwargs_key is None:
        wanted["outsider"] = 200
    assert answers == wanted


@pytest.mark.parametrize("name", sorted(POST_ONLY))
def test_actions_refuse_get_and_anonymous_posts(name, objects, client, supervisor):
    url = _url(name, POST_ONLY[name], objects)
    assert client.post(url).status_code == 302  # anonymous: to login, nothing done
    client.force_login(supervisor)
    assert client.get(url).status_code == 405
