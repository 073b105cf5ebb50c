"""Disputes under real concurrency, on PostgreSQL: threads with their own connections."""

import pytest

from disputes import services
from disputes.models import AdjustmentRequest, Dispute, Priority
from loyalty.models import LedgerEntry, PointsAccount
from tests.disputes.conftest import open_ticket
from tests.loyalty.test_ledger_concurrency import fast_commits, run_together  # noqa: F401

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_concurrent_approvals_post_once(funded_a, agent_a, supervisor, supervisor_2):
    ticket = open_ticket(funded_a)
    adjustment = services.adjustment_request(
        dispute=ticket, points=900, reason="Missing purchase", user=agent_a, request_key="race"
    ).adjustment
    results = run_together(
        [
            lambda: services.adjustment_approve(adjustment=adjustment, user=supervisor),
            lambda: services.adjustment_approve(adjustment=adjustment, user=supervisor_2),
        ]
    )
    assert [status for status, _ in results] == ["ok", "ok"]
    assert sorted(result.replayed for _, result in results) == [False, True]
    assert PointsAccount.objects.get(member=funded_a).balance == 1900
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.ADJUST).count() == 1
    assert AdjustmentRequest.objects.get(pk=adjustment.pk).status == AdjustmentRequest.Status.APPLIED


def test_two_agents_taking_next_at_once_get_different_tickets(member_a, agent_a, supervisor):
    tickets = [open_ticket(member_a, priority=Priority.URGENT) for _ in range(2)]
    results = run_together(
        [
            lambda: services.dispute_take_next(user=agent_a),
            lambda: services.dispute_take_next(user=supervisor),
        ]
    )
    assert [status for status, _ in results] == ["ok", "ok"]
    taken = {result.pk for _, result in results}
    assert taken == {t.pk for t in tickets}
    assert {d.assignee_id for d in Dispute.objects.all()} == {agent_a.pk, supervisor.pk}


def test_two_concurrent_escalation_runs_escalate_each_ticket_once(member_a):
    from datetime import timedelta

    from tests.disputes.conftest import T0

    late = [open_ticket(member_a, priority=Priority.HIGH) for _ in range(5)]
    later = T0 + timedelta(hours=9)
    results = run_together(
        [lambda: services.escalate_overdue(now=later), lambda: services.escalate_overdue(now=later)]
    )
    assert [status for status, _ in results] == ["ok", "ok"]
    ids = [pk for _, escalated in results for pk in escalated]
    assert sorted(ids) == sorted(t.pk for t in late)
    assert set(Dispute.objects.values_list("priority", flat=True)) == {Priority.URGENT}
