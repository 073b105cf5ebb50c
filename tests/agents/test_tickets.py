"""KPIs from our own dispute tickets (disputes.selectors.ticket_kpis_by_agent) scored like the others."""

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from agents import selectors, services
from agents.models import AwardEntry, Metric, TicketKpiRecord
from agents.periods import next_month
from disputes import services as disputes
from disputes.models import Dispute
from tests.agents.conftest import LOWER, MONTH, kpis, rule

pytestmark = pytest.mark.django_db
PARIS = ZoneInfo("Europe/Paris")
H = timedelta(hours=1)


def ticket(member, agent, *, at, reply_after=2 * H, close_after=3 * H):
    dispute = disputes.dispute_open(
        member=member,
        category=Dispute.Category.MISSING_POINTS,
        subject="Missing",
        description="Nothing",
        now=at,
    )
    disputes.comment_add(dispute=dispute, user=agent, body="On it", internal=False, now=at + reply_after)
    return disputes.dispute_close(
        dispute=dispute, to=Dispute.Status.RESOLVED, resolution="Done", user=agent, now=at + close_after
    )


@pytest.fixture
def ticket_rules(program_a):
    return {
        Metric.SLA: rule(program_a, metric=Metric.SLA, target=Decimal("90"), points=30),
        Metric.REOPEN: rule(
            program_a, metric=Metric.REOPEN, direction=LOWER, target=Decimal("10"), points=20
        ),
        Metric.FIRST_RESPONSE: rule(
            program_a, metric=Metric.FIRST_RESPONSE, direction=LOWER, target=Decimal("7200"), points=10
        ),
    }


def test_the_awards_score_the_months_tickets_and_a_reopen_later_posts_the_difference(
    member_a, agent_a, profile_a, ticket_rules
):
    kpis(profile_a, contacts_handled=1)
    closed = ticket(member_a, agent_a, at=datetime(2025, 3, 10, 9, tzinfo=PARIS))
    # Outside March in Paris (31 March 23:30 UTC is 1 April there): not March's.
    ticket(member_a, agent_a, at=datetime(2025, 3, 31, 23, 30, tzinfo=ZoneInfo("UTC")), reply_after=9 * H)
    report = services.awards_post(month=MONTH)
    record = TicketKpiRecord.objects.get(agent=profile_a, period_start=MONTH)
    assert (
        record.first_response_seconds,
        record.sla_attained_pct,
        record.reopen_rate_pct,
        record.resolved,
    ) == (
        7200.0,
        100.0,
        0.0,
        1,
    )
    assert report.points == 60
    # Recorded after the award ran: the member had reopened March's ticket (reopen rate 100 %).
    disputes.dispute_reopen(
        dispute=closed, member=member_a, reason="Still missing", now=datetime(2025, 3, 20, tzinfo=PARIS)
    )
    again = services.awards_post(month=MONTH)
    assert (again.entries, again.points) == (1, -20)
    assert AwardEntry.objects.get(kind="correction").rule == ticket_rules[Metric.REOPEN]
    assert TicketKpiRecord.objects.get().history.count() == 2
    assert services.awards_post(month=MONTH).entries == 0


def test_ticket_metrics_count_on_month_boards_only(member_a, agent_a, profile_a, ticket_rules):
    kpis(profile_a, contacts_handled=1)
    ticket(member_a, agent_a, at=datetime(2025, 3, 10, 9, tzinfo=PARIS))
    services.ticket_kpis_sync(month=MONTH)
    month = selectors.leaderboard(period_start=MONTH, period_end=next_month(MONTH), team=profile_a.team)
    assert month.get(pk=profile_a.pk).points == 60
    week = selectors.leaderboard(
        period_start=MONTH + timedelta(days=5), period_end=MONTH + timedelta(days=12)
    )
    assert week.get(pk=profile_a.pk).points == 0


def test_the_agent_of_another_program_is_not_scored_on_program_a_tickets(
    member_a, agent_a, profile_a, profile_b, ticket_rules
):
    ticket(member_a, agent_a, at=datetime(2025, 3, 10, 9, tzinfo=PARIS))
    assert services.ticket_kpis_sync(month=MONTH) == 1
    assert set(TicketKpiRecord.objects.values_list("agent", flat=True)) == {profile_a.pk}
    assert services.ticket_kpis_sync(month=MONTH) == 0  # nothing changed: nothing written
