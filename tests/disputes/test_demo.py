"""The disputes part of seed_demo: every status, every adjustment outcome, some overdue; idempotent."""

import pytest

from conftest import PASSWORD
from disputes import demo, selectors
from disputes.models import AdjustmentRequest, Comment, Dispute
from loyalty.models import LedgerEntry
from loyalty.roles import Role
from loyalty.services import member_create, staff_user_create
from tests.loyalty.ledger_helpers import earn

pytestmark = pytest.mark.django_db


@pytest.fixture
def programs(program_a, program_b, agent_a, agent_b, supervisor, member_a):
    staff_user_create(username="sup-b", role=Role.SUPERVISOR, password=PASSWORD, programs=[program_b])
    for program in (program_a, program_b):
        for i in range(6):
            member = member_create(
                program=program,
                first_name=f"M{i}",
                last_name="Demo",
                email=f"m{i}@{program.slug}.example.com",
            )
            earn(member.account, 1000)
    return {"bean-there": program_a, "skyhigh": program_b}


def _snapshot():
    return (
        list(
            Dispute.objects.order_by("pk").values_list(
                "pk", "status", "priority", "assignee_id", "updated_at"
            )
        ),
        Comment.objects.count(),
        list(AdjustmentRequest.objects.order_by("pk").values_list("pk", "status")),
        LedgerEntry.objects.count(),
        Dispute.history.count(),
    )


def test_the_demo_has_every_status_and_outcome_and_a_second_run_changes_nothing(
    programs, admin_user, member_a
):
    logs = []
    demo.seed(programs=programs, months=1, log=logs.append)
    for program in programs.values():
        statuses = set(Dispute.objects.filter(program=program).values_list("status", flat=True))
        assert statuses == set(Dispute.Status.values)
        outcomes = set(AdjustmentRequest.objects.filter(program=program).values_list("status", flat=True))
        assert outcomes == set(AdjustmentRequest.Status.values)
    assert any(d.is_overdue for d in selectors.dispute_queue(user=admin_user))
    assert Dispute.objects.filter(member=member_a, status=Dispute.Status.AWAITING_MEMBER).exists()
    assert Dispute.objects.filter(reopened_count__gt=0).exists()
    before = _snapshot()
    demo.seed(programs=programs, months=1, log=logs.append)
    assert _snapshot() == before
    assert "already seeded" in logs[-1]
