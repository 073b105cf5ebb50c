"""Every URL of the "supervisor" namespace against every role (a new URL cannot escape: the
patterns are enumerated from the resolver and each needs an expectation here)."""

import pytest
from django.urls import get_resolver, reverse

from agents.supervisor.selectors import LEDGER
from tests.supervisor.conftest import at

ANON, MEMBER_A, MEMBER_B, AGENT_A, AGENT_B, SUPERVISOR, ADMIN = (
    "anonymous",
    "member_a",
    "member_b",
    "agent_a",
    "agent_b",
    "supervisor",
    "admin_user",
)
ROLES = [ANON, MEMBER_A, MEMBER_B, AGENT_A, AGENT_B, SUPERVISOR, ADMIN]
DENIED = {ANON: 302, MEMBER_A: 403, MEMBER_B: 403, AGENT_A: 403, AGENT_B: 403}

# name -> (how to build its URL from the fixtures, expected status per role)
EXPECTED = {
    "audit_list": {**DENIED, SUPERVISOR: 200, ADMIN: 200},
    "audit_detail": {**DENIED, SUPERVISOR: 200, ADMIN: 200},
    "audit_detail_ledger": {**DENIED, SUPERVISOR: 200, ADMIN: 200},
    "audit_detail_other_program": {**DENIED, SUPERVISOR: 404, ADMIN: 200},
    "report_index": {**DENIED, SUPERVISOR: 302, ADMIN: 302},
    "report": {**DENIED, SUPERVISOR: 200, ADMIN: 200},
}


def supervisor_url_names() -> set[str]:
    resolver = get_resolver()
    namespace_resolver = resolver.namespace_dict["supervisor"][1]
    return {pattern.name for pattern in namespace_resolver.url_patterns}


def test_every_supervisor_url_has_expectations():
    covered = {name.split("_ledger")[0].split("_other_program")[0] for name in EXPECTED}
    assert supervisor_url_names() == covered


@pytest.fixture
def urls(member_a, member_of_b, post):
    entry = post("earn", member_a.account, 10, now=at(2025, 1, 1))
    return {
        "audit_list": reverse("supervisor:audit_list"),
        "audit_detail": reverse(
            "supervisor:audit_detail",
            args=["loyalty.member", member_a.history.earliest("history_date").history_id],
        ),
        "audit_detail_ledger": reverse("supervisor:audit_detail", args=[LEDGER, entry.id]),
        "audit_detail_other_program": reverse(
            "supervisor:audit_detail",
            args=["loyalty.member", member_of_b.history.earliest("history_date").history_id],
        ),
        "report_index": reverse("supervisor:report_index"),
        "report": reverse("supervisor:report", args=["points"]),
    }


@pytest.mark.parametrize("role", ROLES)
def test_access_matrix(
    request, client, role, urls, member_a, member_b, agent_a, agent_b, supervisor, admin_user
):
    if role != ANON:
        client.force_login(
            request.getfixturevalue(role).user if role.startswith("member") else request.getfixturevalue(role)
        )
    for name, url in urls.items():
        response = client.get(url)
        assert response.status_code == EXPECTED[name][role], (name, role)
        if response.status_code == 302 and role == ANON:
            assert "/login" in response["Location"] or "login" in response["Location"]
