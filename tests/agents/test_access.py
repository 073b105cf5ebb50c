"""Every page of the "agents" namespace against every role: never a 500, nothing leaks.

The list of URL names comes from the resolver, so a new page fails this test until it
is given its expected answers here.
"""

import pytest
from django.urls import get_resolver, reverse

from loyalty.roles import Role
from loyalty.services import staff_user_create
from tests.agents.conftest import PASSWORD

CAST = ("anonymous", "member_a", "member_b", "agent_a", "agent_b", "supervisor", "supervisor_b", "admin")
PAGES = {
    # An agent opens only their own page (it takes no argument); staff without a profile see a notice.
    "agents:my_performance": (
        None,
        {"anonymous": 302, "member_a": 403, "member_b": 403, "agent_a": 200, "agent_b": 200}
        | {"supervisor": 200, "supervisor_b": 200, "admin": 200},
    ),
    "agents:leaderboard": (
        None,
        {"anonymous": 302, "member_a": 403, "member_b": 403, "agent_a": 200, "agent_b": 200}
        | {"supervisor": 200, "supervisor_b": 200, "admin": 200},
    ),
    "agents:team_list": (
        None,
        {"anonymous": 302, "member_a": 403, "member_b": 403, "agent_a": 403, "agent_b": 403}
        | {"supervisor": 200, "supervisor_b": 200, "admin": 200},
    ),
    # Program A's team and agent: a supervisor of program B gets a 404, agents a 403.
    "agents:team_detail": (
        "team",
        {"anonymous": 302, "member_a": 403, "member_b": 403, "agent_a": 403, "agent_b": 403}
        | {"supervisor": 200, "supervisor_b": 404, "admin": 200},
    ),
    "agents:agent_detail": (
        "agent",
        {"anonymous": 302, "member_a": 403, "member_b": 403, "agent_a": 403, "agent_b": 403}
        | {"supervisor": 200, "supervisor_b": 404, "admin": 200},
    ),
}


def test_every_agents_url_is_in_the_matrix():
    names = {
        f"agents:{pattern.name}"
        for include in get_resolver().url_patterns
        if getattr(include, "namespace", None) == "agents"
        for pattern in include.url_patterns
    }
    assert names == set(PAGES)


@pytest.fixture
def cast(member_a, member_b, agent_a, agent_b, supervisor, admin_user, profile_a, profile_b, program_b):
    supervisor_b = staff_user_create(
        username="supervisor-b", role=Role.SUPERVISOR, password=PASSWORD, programs=[program_b]
    )
    return {
        "anonymous": None,
        "member_a": member_a.user,
        "member_b": member_b.user,
        "agent_a": agent_a,
        "agent_b": agent_b,
        "supervisor": supervisor,
        "supervisor_b": supervisor_b,
        "admin": admin_user,
    }


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_role_gets_the_answer_its_role_allows(name, cast, client, profile_a):
    kind, wanted = PAGES[name]
    kwargs = {"team": {"pk": profile_a.team_id}, "agent": {"employee_id": profile_a.employee_id}}.get(kind)
    url = reverse(name, kwargs=kwargs)
    answers = {}
    for who in CAST:
        client.logout()
        if cast[who] is not None:
            client.force_login(cast[who])
        answers[who] = client.get(url).status_code
        # The CSV export answers the same, and is never a way around the check.
        if answers[who] == 200 and name != "agents:my_performance" and name != "agents:agent_detail":
            assert client.get(url, {"_export": "csv"}).status_code == 200
    assert answers == wanted
