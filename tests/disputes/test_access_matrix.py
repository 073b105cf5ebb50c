"""Every URL of the "disputes" namespace against the whole cast: reached, refused (403), hidden (404),
sent to login, or refused as bad input (400/409); never a 500. A new URL fails this test until listed."""

import pytest
from django.urls import get_resolver, reverse

from disputes import services
from tests.disputes.conftest import open_ticket

pytestmark = pytest.mark.django_db

CAST = ("anonymous", "member_a", "member_b", "agent_a", "agent_b", "supervisor", "admin")


def answers(anonymous, member, other_member, agent, outsider, supervisor, admin):
    return dict(zip(CAST, (anonymous, member, other_member, agent, outsider, supervisor, admin), strict=True))


STAFF_PAGE = answers(302, 403, 403, 200, 200, 200, 200)  # a list: everyone sees their own programs'
STAFF_OBJECT = answers(302, 403, 403, 200, 404, 200, 200)  # program A's ticket or member
SUPERVISOR_PAGE = answers(302, 403, 403, 403, 403, 200, 200)
MEMBER_PAGE = answers(302, 200, 200, 403, 403, 403, 403)
MEMBER_OBJECT = answers(302, 200, 404, 403, 403, 403, 403)  # member A's own ticket

# name -> (method, kwargs key, expected answers). POSTs carry an empty body: a refused form
# (400), a refused move (409) or, where an empty form is a valid request, the redirect (302).
MATRIX = {
    "disputes:list": ("get", None, STAFF_PAGE),
    "disputes:approvals": ("get", None, SUPERVISOR_PAGE),
    "disputes:create": ("get", "member", STAFF_OBJECT),
    "disputes:detail": ("get", "ticket", STAFF_OBJECT),
    "disputes:history": ("get", "ticket", STAFF_OBJECT),
    "disputes:take_next": ("post", None, answers(302, 403, 403, 302, 302, 302, 302)),
    "disputes:comment": ("post", "ticket", answers(302, 403, 403, 400, 404, 400, 400)),
    "disputes:move": ("post", "ticket", answers(302, 403, 403, 400, 404, 400, 400)),
    "disputes:close": ("post", "ticket", answers(302, 403, 403, 400, 404, 400, 400)),
    "disputes:reopen": ("post", "ticket", answers(302, 403, 403, 409, 404, 409, 409)),
    "disputes:assign": ("post", "ticket", answers(302, 403, 403, 302, 404, 302, 302)),
    "disputes:adjust": ("post", "ticket", answers(302, 403, 403, 400, 404, 400, 400)),
    "disputes:adjustment_decide": ("post", "decision", answers(302, 403, 403, 403, 403, 400, 400)),
    "disputes:my_list": ("get", None, MEMBER_PAGE),
    "disputes:my_create": ("get", None, MEMBER_PAGE),
    "disputes:my_detail": ("get", "ticket", MEMBER_OBJECT),
    "disputes:my_reply": ("post", "ticket", answers(302, 400, 404, 403, 403, 403, 403)),
    "disputes:my_reopen": ("post", "ticket", answers(302, 409, 404, 403, 403, 403, 403)),
}


def test_every_disputes_url_is_in_the_matrix():
    names = {
        f"{include.namespace}:{pattern.name}"
        for include in get_resolver().url_patterns
        if getattr(include, "namespace", None) == "disputes"
        for pattern in include.url_patterns
    }
    assert names == set(MATRIX)


@pytest.fixture
def objects(member_a, agent_a):
    ticket = open_ticket(member_a)
    adjustment = services.adjustment_request(
        dispute=ticket, points=10_000, reason="Big fix", user=agent_a, request_key="matrix"
    ).adjustment
    return {
        "member": {"number": member_a.membership_number},
        "ticket": {"pk": ticket.pk},
        "decision": {"pk": adjustment.pk, "decision": "reject"},
    }


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_each_of_the_cast_gets_the_answer_its_role_allows(
    name, objects, client, member_a, member_b, agent_a, agent_b, supervisor, admin_user
):
    method, key, wanted = MATRIX[name]
    url = reverse(name, kwargs=objects[key] if key else None)
    users = {
        "anonymous": None,
        "member_a": member_a.user,
        "member_b": member_b.user,
        "agent_a": agent_a,
        "agent_b": agent_b,
        "supervisor": supervisor,
        "admin": admin_user,
    }
    got = {}
    for who, user in users.items():
        client.logout()
        if user is not None:
            client.force_login(user)
        got[who] = getattr(client, method)(url).status_code
    assert got == wanted


@pytest.mark.parametrize("name", sorted(n for n, (method, _, _) in MATRIX.items() if method == "post"))
def test_actions_refuse_get(name, objects, client, supervisor):
    _, key, _ = MATRIX[name]
    client.force_login(supervisor)
    assert client.get(reverse(name, kwargs=objects[key] if key else None)).status_code == 405
