"""The queue's SLA flags and the per-agent ticket KPIs (computed in the database)."""

from datetime import timedelta

import pytest

from disputes import selectors, services
from disputes.models import Dispute, Priority
from tests.disputes.conftest import T0, open_ticket

pytestmark = pytest.mark.django_db
H = timedelta(hours=1)
Status = Dispute.Status


def test_the_queue_flags_overdue_and_near_due_and_not_paused_tickets(member_a, agent_a):
    late = open_ticket(member_a, priority=Priority.URGENT)  # first response due T0 + 2 h
    soon = open_ticket(member_a, priority=Priority.URGENT, now=T0 + 2 * H)  # due T0 + 4 h
    calm = open_ticket(member_a, priority=Priority.LOW)
    paused = open_ticket(member_a, priority=Priority.URGENT)
    services.dispute_transition(dispute=paused, to=Status.AWAITING_MEMBER, user=agent_a, now=T0 + H)
    flags = {
        d.pk: (d.is_overdue, d.is_near_due) for d in selectors.dispute_queue(user=agent_a, now=T0 + 3 * H)
    }
    assert flags == {
        late.pk: (True, False),
        soon.pk: (False, True),
        calm.pk: (False, False),
        paused.pk: (False, False),
    }


def test_ticket_kpis_by_agent(member_a, agent_a, supervisor, program_b, member_of_b, agent_b):
    # agent_a: replies after 2 h, resolves within SLA, the ticket is later reopened.
    one = open_ticket(member_a)
    services.comment_add(dispute=one, user=agent_a, body="On it", internal=False, now=T0 + 2 * H)
    services.dispute_close(dispute=one, to=Status.RESOLVED, resolution="Done", user=agent_a, now=T0 + 3 * H)
    services.dispute_reopen(dispute=one, user=agent_a, now=T0 + 4 * H)
    # agent_a: replies after 4 h, closes past the urgent 8 h target.
    two = open_ticket(member_a, priority=Priority.URGENT)
    services.comment_add(dispute=two, user=agent_a, body="Looking", internal=False, now=T0 + 4 * H)
    services.dispute_close(dispute=two, to=Status.REJECTED, resolution="No", user=agent_a, now=T0 + 10 * H)
    # The supervisor replies only; agent_b works program B.
    three = open_ticket(member_a)
    services.comment_add(dispute=three, user=supervisor, body="Hi", internal=False, now=T0 + H)
    four = open_ticket(member_of_b)
    services.dispute_close(dispute=four, to=Status.RESOLVED, resolution="ok", user=agent_b, now=T0 + H)
    # Out of the period: not counted.
    five = open_ticket(member_a, now=T0 - 48 * H)
    services.dispute_close(dispute=five, to=Status.RESOLVED, resolution="ok", user=agent_a, now=T0 - 47 * H)

    kpis = selectors.ticket_kpis_by_agent(start=T0, end=T0 + 24 * H)
    a = kpis[agent_a.pk]
    assert a.first_response_seconds == 3 * 3600  # (2 h + 4 h) / 2
    assert a.resolved == 2
    assert a.resolution_seconds == (3 + 10) / 2 * 3600
    assert a.sla_attained_pct == 50.0
    assert a.reopen_rate_pct == 50.0
    s = kpis[supervisor.pk]
    assert (s.first_response_seconds, s.resolved, s.sla_attained_pct) == (3600, 0, None)
    assert kpis[agent_b.pk].resolved == 1

    only_a = selectors.ticket_kpis_by_agent(start=T0, end=T0 + 24 * H, program_ids=[member_a.program_id])
    assert set(only_a) == {agent_a.pk, supervisor.pk}


def test_ticket_kpis_cost_two_queries_whatever_the_size(member_a, agent_a, django_assert_num_queries):
    for i in range(5):
        ticket = open_ticket(member_a)
        services.dispute_close(
            dispute=ticket, to=Status.RESOLVED, resolution="ok", user=agent_a, now=T0 + i * H
        )
    with django_assert_num_queries(2):
        selectors.ticket_kpis_by_agent(start=T0, end=T0 + 24 * H)
