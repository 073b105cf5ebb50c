"""Disputes in the admin: scoped to the user's programs, tickets read-only with history, policies editable."""

import pytest
from django.urls import reverse

from disputes import services
from disputes.models import DisputePolicy

pytestmark = pytest.mark.django_db


def test_agents_see_their_programs_tickets_read_only_and_with_history(client, agent_a, agent_b, ticket_a):
    change = reverse("admin:disputes_dispute_change", args=[ticket_a.pk])
    history = reverse("admin:disputes_dispute_history", args=[ticket_a.pk])
    client.force_login(agent_a)
    listing = client.get(reverse("admin:disputes_dispute_changelist"))
    assert listing.status_code == 200 and ticket_a.subject in listing.content.decode()
    page = client.get(change)
    assert page.status_code == 200 and b'name="status"' not in page.content  # read-only
    assert client.get(history).status_code == 200
    assert client.post(change, {"status": "resolved"}).status_code == 403
    client.force_login(agent_b)
    assert ticket_a.subject not in client.get(reverse("admin:disputes_dispute_changelist")).content.decode()
    assert client.get(change).status_code == 404
    assert client.get(history).status_code == 404


def test_a_supervisor_sets_the_policy_and_an_agent_cannot(client, agent_a, supervisor, program_a, program_b):
    add = reverse("admin:disputes_disputepolicy_add")
    data = {
        "program": program_a.pk,
        "approval_threshold": 50,
        "reopen_window_days": 3,
        "assignment": "round_robin",
        **{f"first_response_hours_{p}": 4 for p in ("low", "normal", "high", "urgent")},
        **{f"resolution_hours_{p}": 24 for p in ("low", "normal", "high", "urgent")},
    }
    client.force_login(agent_a)
    assert client.post(add, data).status_code == 403
    client.force_login(supervisor)
    assert (
        client.post(add, {**data, "program": program_b.pk}).status_code == 200
    )  # not their program: refused
    assert client.post(add, data).status_code == 302
    policy = services.policy_for(program_a)
    assert (policy.approval_threshold, policy.assignment) == (50, DisputePolicy.Assignment.ROUND_ROBIN)
    assert policy.history.first().history_user == supervisor
