"""Fixtures for the dispute tests: a second supervisor of program A, a ticket, a funded account."""

from datetime import UTC, datetime

import pytest

from conftest import PASSWORD
from disputes import services
from disputes.models import Dispute
from loyalty.roles import Role
from loyalty.services import staff_user_create
from tests.loyalty.ledger_helpers import earn

# A fixed clock: SLA tests pass `now=` and never read the wall clock.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def supervisor_2(program_a):
    return staff_user_create(
        username="supervisor-2", role=Role.SUPERVISOR, password=PASSWORD, programs=[program_a]
    )


@pytest.fixture
def funded_a(member_a):
    """Member A with 1,000 points."""
    earn(member_a.account, 1000)
    return member_a


def open_ticket(member, *, now=T0, **kwargs) -> Dispute:
    kwargs.setdefault("category", Dispute.Category.MISSING_POINTS)
    kwargs.setdefault("subject", "Points missing")
    kwargs.setdefault("description", "My purchase of last week earned nothing.")
    return services.dispute_open(member=member, now=now, **kwargs)


@pytest.fixture
def ticket_a(member_a):
    return open_ticket(member_a)


@pytest.fixture
def ticket_b(member_of_b):
    return open_ticket(member_of_b)
