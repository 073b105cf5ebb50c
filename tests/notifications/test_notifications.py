"""Notifications: the log sends once per key, opt-outs hold, webhooks arrive signed and retry."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from loyalty import ledger
from loyalty.ledger import Actor
from loyalty.notifications import delivery, notify
from loyalty.notifications.models import Message, NotificationPreference, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def test_a_job_rerun_sends_nothing_twice(member_a, django_capture_on_commit_callbacks):
    account = ledger.open_account(member=member_a)
    ledger.credit(
        account=account,
        points=80,
        reason="Test",
        actor=Actor.job("test"),
        idempotency_key="t-1",
        source="job",
        expires_at=timezone.now() + timedelta(days=10),
    )
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            delivery.expiring_points_notify()
    assert Message.objects.filter(kind="points_expiring").count() == 1
    assert len(mail.outbox) == 1
    assert "80 of your points expire" in mail.outbox[0].body
    assert mail.outbox[0].alternatives[0][1] == "text/html"


def test_the_same_dedupe_key_is_sent_once(member_a, django_capture_on_commit_callbacks):
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            notify(member=member_a, kind="tier_changed", context={"to": "Gold"}, dedupe_key="tier-change:1")
    assert Message.objects.get().status == Message.Status.SENT
    assert len(mail.outbox) == 1


def test_an_opted_out_member_gets_no_email_but_the_log_says_why(member_a, django_capture_on_commit_callbacks):
    delivery.preferences_set(member=member_a, choices={"redemption_status": False})
    with django_capture_on_commit_callbacks(execute=True):
        notify(member=member_a, kind="redemption_status", context={"status": "approved"}, dedupe_key="r:1")
    assert Message.objects.get().status == Message.Status.OPTED_OUT
    assert mail.outbox == []


def test_the_preferences_page_saves_opt_outs(login, member_a):
    client = login(member_a.user)
    assert client.get("/me/notifications/").status_code == 200
    response = client.post("/me/notifications/", {"tier_changed": "on"})
    assert response.status_code == 302
    assert delivery.preferences_of(member=member_a)["tier_changed"] is True
    assert delivery.preferences_of(member=member_a)["redemption_status"] is False
    assert NotificationPreference.objects.filter(member=member_a, email=False).count() == 5


# --- Webhooks -------------------------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    received: list = []
    answer = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).answer)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint_server():
    def start(answer):
        handler = type("Handler", (Receiver,), {"received": [], "answer": answer})
        server = HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/hook", handler

    servers = []
    yield start
    for server in servers:
        server.shutdown()


def test_a_webhook_arrives_signed(program_a, member_a, endpoint_server, django_capture_on_commit_callbacks):
    url, handler = endpoint_server(200)
    endpoint = WebhookEndpoint.objects.create(program=program_a, url=url, events=["tier_changed"])
    with django_capture_on_commit_callbacks(execute=True):
        notify(member=member_a, kind="tier_changed", context={"to": "Gold"}, dedupe_key="tier-change:9")
    assert delivery.webhooks_send_due() == {"tried": 1, "delivered": 1}
    headers, body = handler.received[0]
    timestamp = int(headers["X-Loyalty-Timestamp"])
    assert delivery.verify(
        secret=endpoint.secret, timestamp=timestamp, body=body, signature=headers["X-Loyalty-Signature"]
    )
    assert not delivery.verify(
        secret="wrong", timestamp=timestamp, body=body, signature=headers["X-Loyalty-Signature"]
    )
    payload = json.loads(body)
    assert payload["event"] == "tier_changed" and payload["data"]["member"] == member_a.membership_number
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.DELIVERED
    # A rerun of the job sends nothing again.
    assert delivery.webhooks_send_due() == {"tried": 0, "delivered": 0}
    assert len(handler.received) == 1


def test_a_failing_endpoint_is_retried_with_backoff_and_logged(
    program_a, member_a, endpoint_server, django_capture_on_commit_callbacks
):
    url, handler = endpoint_server(503)
    WebhookEndpoint.objects.create(program=program_a, url=url, events=["tier_changed"])
    with django_capture_on_commit_callbacks(execute=True):
        notify(member=member_a, kind="tier_changed", context={}, dedupe_key="tier-change:10")
    now = timezone.now()
    delivery.webhooks_send_due(now=now)
    item = WebhookDelivery.objects.get()
    assert item.status == WebhookDelivery.Status.RETRYING and item.last_status_code == 503
    assert item.next_attempt_at == now + timedelta(minutes=1)
    assert delivery.webhooks_send_due(now=now)["tried"] == 0  # not due yet
    delivery.webhooks_send_due(now=now + timedelta(minutes=1))
    item.refresh_from_db()
    assert item.attempts == 2 and item.next_attempt_at == now + timedelta(minutes=3)
    assert list(item.attempt_log.values_list("status_code", flat=True)) == [503, 503]
    assert len(handler.received) == 2
    handler.answer = 200
    delivery.webhooks_send_due(now=now + timedelta(minutes=3))
    item.refresh_from_db()
    assert item.status == WebhookDelivery.Status.DELIVERED


def test_a_dead_endpoint_does_not_break_the_posting(program_a, member_a, django_capture_on_commit_callbacks):
    from loyalty.earning import activity_post
    from tests.loyalty.factories import EarningRuleFactory

    EarningRuleFactory(program=program_a)
    WebhookEndpoint.objects.create(program=program_a, url="http://127.0.0.1:9/dead", events=["points_posted"])
    with django_capture_on_commit_callbacks(execute=True):
        result = activity_post(
            member=member_a, code="purchase", reference="W1", amount="10", source="api", actor=Actor.job("t")
        )
    assert result.points == 10
    item = WebhookDelivery.objects.get()
    assert item.event == "points_posted" and item.payload["data"]["points"] == 10
    delivery.webhooks_send_due()
    item.refresh_from_db()
    assert item.status == WebhookDelivery.Status.RETRYING and "Error" in item.last_error


def test_an_agent_can_resend_a_delivery(login, agent_a, agent_b, program_a, endpoint_server):
    url, handler = endpoint_server(200)
    endpoint = WebhookEndpoint.objects.create(program=program_a, url=url, events=["tier_changed"])
    item = WebhookDelivery.objects.create(
        endpoint=endpoint,
        program=program_a,
        event="tier_changed",
        event_id="x",
        payload={"a": 1},
        next_attempt_at=timezone.now(),
    )
    assert login(agent_b).post(f"/webhooks/deliveries/{item.pk}/resend/").status_code == 404
    client = login(agent_a)
    assert client.post(f"/webhooks/deliveries/{item.pk}/resend/").status_code == 302
    item.refresh_from_db()
    assert item.status == WebhookDelivery.Status.DELIVERED and len(handler.received) == 1
    assert client.get(f"/webhooks/deliveries/{item.pk}/").status_code == 200
