"""The dispute pages: queue (filters, CSV, query counts), the ticket page, actions, the member's pages."""

import csv
import io
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from disputes import services
from disputes.models import AdjustmentRequest, Comment, Dispute, Priority
from loyalty.models import LedgerEntry, PointsAccount
from tests.disputes.conftest import open_ticket
from tests.loyalty.ledger_helpers import earn

pytestmark = pytest.mark.django_db
Status = Dispute.Status


def now_ticket(member, **kwargs):
    return open_ticket(member, now=timezone.now(), **kwargs)


# --- Queue --------------------------------------------------------------------------------


def _make_tickets(member, n):
    for i in range(n):
        now_ticket(member, priority=Priority.values[i % 4])


def test_the_queue_costs_the_same_queries_for_3_and_30_tickets(
    client, agent_a, member_a, member_b, django_assert_max_num_queries
):
    client.force_login(agent_a)
    url = reverse("disputes:list")
    _make_tickets(member_a, 3)
    client.get(url)  # warm caches (content types, sessions)
    with django_assert_max_num_queries(12) as small:
        assert client.get(url).status_code == 200
    _make_tickets(member_b, 27)
    with django_assert_max_num_queries(len(small.captured_queries)) as large:
        response = client.get(url)
    assert response.status_code == 200
    assert response.content.count(b'id="dispute-') == 30
    assert len(large.captured_queries) == len(small.captured_queries)


def test_the_queue_shows_only_my_programs_and_filters(client, agent_a, member_a, member_of_b):
    mine = now_ticket(member_a, category=Dispute.Category.EXPIRED_IN_ERROR)
    other = now_ticket(member_a, category=Dispute.Category.OTHER)
    theirs = now_ticket(member_of_b)
    client.force_login(agent_a)
    page = client.get(reverse("disputes:list")).content.decode()
    assert f'id="dispute-{mine.pk}"' in page and f'id="dispute-{theirs.pk}"' not in page
    filtered = client.get(reverse("disputes:list"), {"category": "expired"}).content.decode()
    assert f'id="dispute-{mine.pk}"' in filtered and f'id="dispute-{other.pk}"' not in filtered
    services.dispute_assign(dispute=other, assignee=agent_a, user=agent_a)
    assert (
        f'id="dispute-{mine.pk}"'
        not in client.get(reverse("disputes:list"), {"queue": "mine"}).content.decode()
    )
    unassigned = client.get(reverse("disputes:list"), {"queue": "unassigned"}).content.decode()
    assert f'id="dispute-{mine.pk}"' in unassigned and f'id="dispute-{other.pk}"' not in unassigned


def test_the_overdue_filter_and_the_closed_ones_only_on_request(client, agent_a, member_a):
    late = open_ticket(member_a, now=timezone.now() - timedelta(days=30))
    fresh = now_ticket(member_a)
    done = now_ticket(member_a)
    services.dispute_close(dispute=done, to=Status.RESOLVED, resolution="ok", user=agent_a)
    client.force_login(agent_a)
    overdue = client.get(reverse("disputes:list"), {"due": "overdue"}).content.decode()
    assert f'id="dispute-{late.pk}"' in overdue and f'id="dispute-{fresh.pk}"' not in overdue
    assert "Overdue" in overdue
    assert f'id="dispute-{done.pk}"' not in client.get(reverse("disputes:list")).content.decode()
    everything = client.get(reverse("disputes:list"), {"status": "all"}).content.decode()
    assert f'id="dispute-{done.pk}"' in everything


def test_the_queue_exports_csv(client, agent_a, member_a):
    ticket = now_ticket(member_a, subject="Lost 40 points")
    client.force_login(agent_a)
    response = client.get(reverse("disputes:list"), {"_export": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["Ticket"], r["Subject"], r["Priority"], r["Member"]) for r in rows] == [
        (ticket.reference, "Lost 40 points", "Normal", member_a.full_name)
    ]


def test_a_bad_filter_is_a_form_error_not_a_500(client, agent_a):
    client.force_login(agent_a)
    response = client.get(reverse("disputes:list"), {"priority": "9", "status": "nope"})
    assert response.status_code == 200
    assert b"Some filters are not valid" in response.content


def test_take_next_assigns_me_and_opens_the_ticket(client, agent_a, member_a):
    ticket = now_ticket(member_a, priority=Priority.HIGH)
    now_ticket(member_a, priority=Priority.LOW)
    client.force_login(agent_a)
    response = client.post(reverse("disputes:take_next"))
    assert response.status_code == 302 and response["Location"] == ticket.get_absolute_url()
    assert Dispute.objects.get(pk=ticket.pk).assignee == agent_a


# --- Ticket page -----------------------------------------------------------------------------


def test_the_ticket_page_shows_the_members_context_and_the_balance_on_the_disputed_date(
    client, agent_a, member_a
):
    earn(member_a.account, 300, now=timezone.now() - timedelta(days=10), reason="Old purchase")
    earn(member_a.account, 200, now=timezone.now(), reason="Purchase today")
    day = timezone.localdate(timezone.now() - timedelta(days=5), member_a.program.tz)
    ticket = now_ticket(member_a, disputed_on=day)
    client.force_login(agent_a)
    response = client.get(ticket.get_absolute_url())
    page = response.content.decode()
    assert response.status_code == 200
    assert response.context["account"].balance == 500
    assert response.context["ctx"].on_disputed_date.balance == 300
    assert f"Balance at the end of {day:%Y-%m-%d}" in page
    assert "Old purchase" in page and "Purchase today" in page  # recent entries and the explanation
    assert "Adds up" in page
    assert reverse("disputes:history", kwargs={"pk": ticket.pk}) in page


def test_the_ticket_page_costs_the_same_queries_with_more_comments(
    client, agent_a, member_a, django_assert_max_num_queries
):
    earn(member_a.account, 100)  # a lot to explain, so the explanation's queries all run
    ticket = now_ticket(member_a)
    client.force_login(agent_a)
    client.get(ticket.get_absolute_url())
    with django_assert_max_num_queries(60) as few:
        client.get(ticket.get_absolute_url())
    for i in range(10):
        services.comment_add(dispute=ticket, user=agent_a, body=f"note {i}", internal=i % 2 == 0)
        services.adjustment_request(
            dispute=ticket, points=i + 1, reason="fix", user=agent_a, request_key=f"k{i}"
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(ticket.get_absolute_url()).status_code == 200


def test_a_reply_from_the_page_reaches_the_member_and_a_note_does_not(client, agent_a, member_a):
    ticket = now_ticket(member_a)
    client.force_login(agent_a)
    url = reverse("disputes:comment", kwargs={"pk": ticket.pk})
    client.post(url, {"comment-body": "Secret: suspected fraud", "comment-internal": "on"})
    client.post(url, {"comment-body": "We are checking your purchase."})
    client.force_login(member_a.user)
    page = client.get(reverse("disputes:my_detail", kwargs={"pk": ticket.pk})).content.decode()
    assert "We are checking your purchase." in page
    assert "suspected fraud" not in page


def test_an_illegal_move_from_the_page_is_refused_with_a_message(client, agent_a, member_a):
    ticket = now_ticket(member_a)
    services.dispute_close(dispute=ticket, to=Status.RESOLVED, resolution="ok", user=agent_a)
    client.force_login(agent_a)
    response = client.post(reverse("disputes:move", kwargs={"pk": ticket.pk}), {"move-status": "in_progress"})
    assert response.status_code == 409
    assert "cannot be moved" in response.content.decode()
    assert Dispute.objects.get(pk=ticket.pk).status == Status.RESOLVED


def test_closing_from_the_page_with_a_pending_adjustment_is_refused(client, agent_a, member_a):
    ticket = now_ticket(member_a)
    services.adjustment_request(dispute=ticket, points=5000, reason="big", user=agent_a, request_key="x")
    client.force_login(agent_a)
    response = client.post(
        reverse("disputes:close", kwargs={"pk": ticket.pk}),
        {"close-outcome": "resolved", "close-resolution": "Done"},
    )
    assert response.status_code == 409
    assert "awaits a supervisor" in response.content.decode()
    assert Dispute.objects.get(pk=ticket.pk).status == Status.OPEN


def test_a_double_submitted_adjustment_form_applies_once(client, agent_a, member_a):
    ticket = now_ticket(member_a)
    client.force_login(agent_a)
    data = {"points": "40", "reason": "Missing purchase", "request_key": str(uuid.uuid4())}
    url = reverse("disputes:adjust", kwargs={"pk": ticket.pk})
    assert client.post(url, data).status_code == 302
    assert client.post(url, data).status_code == 302
    assert PointsAccount.objects.get(member=member_a).balance == 40
    assert LedgerEntry.objects.filter(kind="adjust").count() == 1


def test_a_supervisor_approves_from_the_page_and_an_agent_cannot(client, agent_a, supervisor, member_a):
    ticket = now_ticket(member_a)
    adjustment = services.adjustment_request(
        dispute=ticket, points=800, reason="Missing purchase", user=agent_a, request_key="y"
    ).adjustment
    url = reverse("disputes:adjustment_decide", kwargs={"pk": adjustment.pk, "decision": "approve"})
    client.force_login(agent_a)
    assert client.post(url).status_code == 403
    assert PointsAccount.objects.get(member=member_a).balance == 0
    client.force_login(supervisor)
    page = client.get(ticket.get_absolute_url()).content.decode()
    assert url in page  # the supervisor is offered the decision
    assert client.post(url).status_code == 302
    assert client.post(url).status_code == 302  # a second click changes nothing
    assert PointsAccount.objects.get(member=member_a).balance == 800
    approvals = client.get(reverse("disputes:approvals")).content.decode()
    assert "No adjustment awaits approval" in approvals


def test_the_requester_is_not_offered_the_decision(client, supervisor, member_a):
    ticket = now_ticket(member_a)
    adjustment = services.adjustment_request(
        dispute=ticket, points=800, reason="Missing purchase", user=supervisor, request_key="z"
    ).adjustment
    client.force_login(supervisor)
    page = client.get(ticket.get_absolute_url()).content.decode()
    assert (
        reverse("disputes:adjustment_decide", kwargs={"pk": adjustment.pk, "decision": "approve"}) not in page
    )
    response = client.post(
        reverse("disputes:adjustment_decide", kwargs={"pk": adjustment.pk, "decision": "approve"})
    )
    assert response.status_code == 403
    assert AdjustmentRequest.objects.get(pk=adjustment.pk).status == AdjustmentRequest.Status.PENDING


def test_the_approvals_list_shows_pending_requests_of_my_programs(client, supervisor, agent_a, member_a):
    ticket = now_ticket(member_a)
    services.adjustment_request(dispute=ticket, points=700, reason="Big one", user=agent_a, request_key="q")
    client.force_login(supervisor)
    response = client.get(reverse("disputes:approvals"), {"_export": "csv"})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["Ticket"], r["Points"]) for r in rows] == [(ticket.reference, "700")]


def test_an_agent_opens_a_ticket_for_a_member(client, agent_a, member_a):
    client.force_login(agent_a)
    url = reverse("disputes:create", kwargs={"number": member_a.membership_number})
    response = client.post(
        url,
        {
            "category": "missing_points",
            "subject": "Phone call",
            "description": "Says 50 missing",
            "priority": "3",
        },
    )
    ticket = Dispute.objects.get()
    assert response.status_code == 302 and response["Location"] == ticket.get_absolute_url()
    assert (ticket.channel, ticket.created_by, ticket.priority) == ("agent", agent_a, Priority.HIGH)
    assert client.post(url, {"category": "nope"}).status_code == 400


# --- The member's pages ---------------------------------------------------------------------


def test_a_member_opens_a_dispute_about_one_of_their_entries(client, member_a):
    entry = earn(member_a.account, 100, now=timezone.now() - timedelta(days=3)).entry
    client.force_login(member_a.user)
    assert client.get(reverse("disputes:my_create")).status_code == 200
    response = client.post(
        reverse("disputes:my_create"),
        {
            "category": "wrong_balance",
            "subject": "Too few",
            "description": "Should be 150",
            "related_entry": entry.pk,
        },
    )
    ticket = Dispute.objects.get()
    assert response["Location"] == reverse("disputes:my_detail", kwargs={"pk": ticket.pk})
    assert (ticket.related_entry, ticket.member, ticket.channel) == (entry, member_a, "portal")
    assert ticket.disputed_on == timezone.localdate(entry.occurred_at, member_a.program.tz)
    listing = client.get(reverse("disputes:my_list")).content.decode()
    assert ticket.reference in listing


def test_a_member_cannot_point_at_someone_elses_entry(client, member_a, member_b):
    theirs = earn(member_b.account, 100).entry
    client.force_login(member_a.user)
    response = client.post(
        reverse("disputes:my_create"),
        {"category": "other", "subject": "x", "description": "y", "related_entry": theirs.pk},
    )
    assert response.status_code == 400
    assert "related_entry" in response.context["form"].errors
    assert not Dispute.objects.exists()


def test_a_member_reply_restarts_a_paused_ticket(client, agent_a, member_a):
    ticket = now_ticket(member_a)
    services.comment_add(
        dispute=ticket, user=agent_a, body="Receipt please", internal=False, await_member=True
    )
    client.force_login(member_a.user)
    page = client.get(reverse("disputes:my_detail", kwargs={"pk": ticket.pk})).content.decode()
    assert "Waiting for your answer" in page
    response = client.post(reverse("disputes:my_reply", kwargs={"pk": ticket.pk}), {"body": "Attached."})
    assert response.status_code == 302
    ticket = Dispute.objects.get(pk=ticket.pk)
    assert ticket.status == Status.IN_PROGRESS and ticket.paused_at is None
    assert Comment.objects.filter(dispute=ticket, by_member=True, body="Attached.").exists()


def test_a_member_reopens_a_closed_ticket_within_the_window(client, agent_a, member_a):
    ticket = now_ticket(member_a)
    services.dispute_close(dispute=ticket, to=Status.RESOLVED, resolution="Credited 40.", user=agent_a)
    client.force_login(member_a.user)
    page = client.get(reverse("disputes:my_detail", kwargs={"pk": ticket.pk})).content.decode()
    assert "Credited 40." in page and "Reopen" in page
    client.post(reverse("disputes:my_reopen", kwargs={"pk": ticket.pk}), {"reason": "Still 10 short"})
    assert Dispute.objects.get(pk=ticket.pk).status == Status.OPEN


def test_the_member_list_costs_the_same_queries_for_1_and_20_tickets(
    client, member_a, django_assert_max_num_queries
):
    client.force_login(member_a.user)
    now_ticket(member_a)
    client.get(reverse("disputes:my_list"))
    with django_assert_max_num_queries(12) as small:
        client.get(reverse("disputes:my_list"))
    for _ in range(19):
        now_ticket(member_a)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(reverse("disputes:my_list"))
    assert response.content.count(b'id="dispute-') == 20


def test_the_nav_offers_my_disputes_to_members_and_disputes_to_agents(client, member_a, agent_a):
    client.force_login(member_a.user)
    labels = [item["label"] for item in client.get(reverse("disputes:my_list")).context["nav"]]
    assert "My disputes" in labels and "Disputes" not in labels
    client.force_login(agent_a)
    labels = [item["label"] for item in client.get(reverse("disputes:list")).context["nav"]]
    assert "Disputes" in labels and "My disputes" not in labels


def test_the_approvals_list_costs_the_same_queries_for_2_and_20_requests(
    client, supervisor, agent_a, member_a, member_b, django_assert_max_num_queries
):
    def requests(member, n, prefix):
        for i in range(n):
            services.adjustment_request(
                dispute=now_ticket(member), points=900, reason="Big", user=agent_a, request_key=f"{prefix}{i}"
            )

    client.force_login(supervisor)
    url = reverse("disputes:approvals")
    requests(member_a, 2, "a")
    client.get(url)
    with django_assert_max_num_queries(12) as small:
        client.get(url)
    requests(member_b, 18, "b")
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(url)
    assert response.content.count(b"#adjustments") == 20
