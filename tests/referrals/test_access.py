"""Every page of the referrals namespace against every member of the cast; never a 500.

A new URL in the namespace fails `test_every_referrals_url_is_in_the_matrix` until listed here.
"""

import pytest
from django.urls import get_resolver, reverse

from loyalty.models import Member
from referrals.models import Referral
from tests.referrals.conftest import buy, join

STAFF = "staff"
MEMBER = "member"
PUBLIC = "public"
REDIRECT = "redirect"  # staff of the program are sent on to the member's attribution page

# name -> (who may GET it, how to build its kwargs)
PAGES = {
    "referrals:list": (STAFF, None),
    "referrals:report": (STAFF, None),
    "referrals:detail": (STAFF, "referral"),
    "referrals:attribute": (STAFF, "member"),
    "referrals:attribute_start": (REDIRECT, "number"),
    "referrals:my_referrals": (MEMBER, None),
    "referrals:share": (PUBLIC, "code"),
}
POST_ONLY = {"referrals:action": "referral_action"}

CAST = ("anonymous", "member_a", "member_b", "agent", "outsider", "supervisor", "admin")
ANSWERS = {
    STAFF: {
        "anonymous": 302,
        "member_a": 403,
        "member_b": 403,
        "agent": 200,
        "outsider": 404,
        "supervisor": 200,
        "admin": 200,
    },
    MEMBER: {
        "anonymous": 302,
        "member_a": 200,
        "member_b": 200,
        "agent": 403,
        "outsider": 403,
        "supervisor": 403,
        "admin": 403,
    },
    REDIRECT: {
        "anonymous": 302,
        "member_a": 403,
        "member_b": 403,
        "agent": 302,
        "outsider": 404,
        "supervisor": 302,
        "admin": 302,
    },
    # The share link is for anyone: it logs the click and redirects to sign-up.
    PUBLIC: dict.fromkeys(CAST, 302),
}


@pytest.fixture
def objects(code_a, program_a, member_a, member_b):
    Member.objects.filter(pk=member_a.pk).update(email="alice@gmail.com")
    referee = join(program_a, code_a, email="alice+x@gmail.com")
    buy(referee, "30.00")
    referral = Referral.objects.get(referee=referee)
    assert referral.status == Referral.Status.HELD
    return {
        "referral": {"pk": referral.pk},
        "referral_action": {"pk": referral.pk, "action": "approve"},
        "member": {"number": member_b.membership_number},
        "code": {"code": code_a},
        "number": {},
    }


def test_every_referrals_url_is_in_the_matrix():
    names = {
        f"{include.namespace}:{pattern.name}"
        for include in get_resolver().url_patterns
        if getattr(include, "namespace", None) == "referrals"
        for pattern in include.url_patterns
    }
    assert names == set(PAGES) | set(POST_ONLY)


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_role_gets_the_answer_its_role_allows(
    name, objects, client, member_a, member_b, agent_a, agent_b, supervisor, admin_user
):
    who, kwargs_key = PAGES[name]
    url = reverse(name, kwargs=objects[kwargs_key] if kwargs_key else None)
    if kwargs_key == "number":
        url += f"?number={member_b.membership_number}"
    users = {
        "anonymous": None,
        "member_a": member_a.user,
        "member_b": member_b.user,
        "agent": agent_a,
        "outsider": agent_b,
        "supervisor": supervisor,
        "admin": admin_user,
    }
    answers = {}
    for role, user in users.items():
        client.logout()
        if user is not None:
            client.force_login(user)
        answers[role] = client.get(url).status_code
    wanted = dict(ANSWERS[who])
    if who == STAFF and kwargs_key is None:
        wanted["outsider"] = 200  # lists and reports are scoped to the outsider's own programs
    assert answers == wanted


def test_the_action_refuses_get_anonymous_members_and_outsiders(objects, client, member_a, agent_b):
    url = reverse("referrals:action", kwargs=objects["referral_action"])
    assert client.post(url).status_code == 302  # anonymous: to login
    client.force_login(member_a.user)
    assert client.post(url, {"approve-reason": ""}).status_code == 403
    client.force_login(agent_b)
    assert client.post(url, {"approve-reason": ""}).status_code == 404
    assert client.get(url).status_code == 405
    assert Referral.objects.get(pk=objects["referral"]["pk"]).status == Referral.Status.HELD
