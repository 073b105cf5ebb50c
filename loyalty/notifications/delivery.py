"""Delivering notifications: the message log and email, the weekly expiry digest, signed webhooks.

Everything here runs after the causing transaction has committed (notify()'s
on_commit, or the posting's on_commit for points_posted), so a slow mailer or a
dead webhook endpoint never slows or undoes the posting. Each message and each
webhook delivery is a row with a unique key created before anything is sent:
a job or a handler that runs again finds the row and sends nothing twice.

Webhooks: POST of the JSON payload with headers
    X-Loyalty-Event: <event>            X-Loyalty-Delivery: <delivery id>
    X-Loyalty-Timestamp: <unix seconds>
    X-Loyalty-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
A receiver recomputes the HMAC and rejects old timestamps (replays). A non-2xx
answer or a network error is logged as an attempt and retried with exponential
backoff (1, 2, 4 ... minutes, MAX_ATTEMPTS tries) by the `send_webhooks` job.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Min, Q, Sum
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils import timezone

from loyalty.errors import ApplicationError
from loyalty.models import Member, PointLot
from loyalty.notifications import notify
from loyalty.notifications.models import (
    KINDS,
    POINTS_POSTED,
    Message,
    NotificationPreference,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(minutes=1)
WEBHOOK_TIMEOUT_SECONDS = 5
EXPIRY_WINDOW_DAYS = 30


# --- Entry points (handlers) ------------------------------------------------------


def deliver(*, member, kind: str, context: dict, dedupe_key: str) -> None:
    """notify()'s handler: log the message once, email it unless opted out, tell the webhooks."""
    try:
        message = message_queue(member=member, kind=kind, context=context, dedupe_key=dedupe_key)
        if message is not None and message.status == Message.Status.QUEUED:
            _dispatch_message(message.pk)
        webhook_fanout(
            program_id=member.program_id,
            event=kind,
            event_id=dedupe_key,
            data={"member": member.membership_number, **_jsonable(context)},
        )
    except Exception:  # never let a notification break the caller, who has already committed
        log.exception("Could not deliver %s notification %s", kind, dedupe_key)


def on_activity_posted(sender, *, member, result, reference, source, run=None, **kwargs) -> None:
    """activity_posted receiver: a points_posted webhook once the posting commits (the
    postings of a set-based run fan out together, once it commits)."""
    posting = result.posting
    if posting is None or posting.replayed:
        return
    entry = posting.entry
    data = {
        "member": member.membership_number,
        "reference": reference,
        "source": source,
        "points": entry.points + entry.pending_points,
        "pending": entry.pending_points > 0,
        "balance": entry.balance_after,
        "occurred_at": entry.occurred_at.isoformat(),
        "entry_id": entry.pk,
    }
    program_id = member.program_id
    event = (f"entry:{entry.pk}", data)
    if run is not None:
        run.defer((POINTS_POSTED, program_id), event, functools.partial(_points_posted_fanout, program_id))
    else:
        transaction.on_commit(functools.partial(_points_posted_fanout, program_id, [event]))


def _points_posted_fanout(program_id: int, events: list[tuple[str, dict]]) -> None:
    try:
        webhook_fanout_many(program_id=program_id, event=POINTS_POSTED, events=events)
    except Exception:
        log.exception(
            "Could not queue points_posted webhooks for %s", ", ".join(event_id for event_id, _ in events)
        )


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


# --- Messages -----------------------------------------------------------------------


def wants(*, member: Member, kind: str) -> bool:
    preference = NotificationPreference.objects.filter(member=member, kind=kind).first()
    return preference is None or preference.email


def message_queue(*, member: Member, kind: str, context: dict, dedupe_key: str) -> Message | None:
    """The message for this key, created once: None when it existed (sent or decided before)."""
    if Message.objects.filter(dedupe_key=dedupe_key).exists():
        return None
    status = Message.Status.QUEUED
    if not wants(member=member, kind=kind):
        status = Message.Status.OPTED_OUT
    elif not member.email:
        status = Message.Status.NO_ADDRESS
    with transaction.atomic():
        message, created = Message.objects.get_or_create(
            dedupe_key=dedupe_key,
            defaults={
                "program_id": member.program_id,
                "member": member,
                "kind": kind,
                "to": member.email,
                "context": _jsonable(context),
                "status": status,
            },
        )
    return message if created else None


def _dispatch_message(message_id: int) -> None:
    from loyalty.notifications.tasks import send_message

    send_message.delay(message_id)


def _render(message: Message) -> tuple[str, str, str]:
    member = message.member
    context = {"member": member, "program": member.program, "kind": message.kind, **message.context}
    label = KINDS.get(message.kind, message.kind.replace("_", " "))
    subject = f"{member.program.name}: {label}"
    templates = [f"notifications/email/{message.kind}", "notifications/email/generic"]
    for base in templates:
        try:
            text = render_to_string(f"{base}.txt", context)
            html = render_to_string(f"{base}.html", context)
            return subject, text, html
        except TemplateDoesNotExist:
            continue
    raise TemplateDoesNotExist(templates)


def message_send(*, message_id: int) -> Message:
    """Email a queued message, once: the row is locked and only a queued row is sent."""
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(of=("self",))
            .select_related("member__program")
            .get(pk=message_id)
        )
        if message.status not in (Message.Status.QUEUED, Message.Status.FAILED):
            return message
        message.subject, message.body_text, message.body_html = _render(message)
        message.attempts += 1
        email = EmailMultiAlternatives(
            message.subject, message.body_text, settings.DEFAULT_FROM_EMAIL, [message.to]
        )
        email.attach_alternative(message.body_html, "text/html")
        try:
            email.send()
        except Exception as error:  # SMTP down: logged on the row, the task retries
            message.status = Message.Status.FAILED
            message.error = str(error)[:500]
        else:
            message.status = Message.Status.SENT
            message.sent_at = timezone.now()
            message.error = ""
        message.save()
    return message


def preferences_of(*, member: Member) -> dict[str, bool]:
    chosen = dict(NotificationPreference.objects.filter(member=member).values_list("kind", "email"))
    return {kind: chosen.get(kind, True) for kind in KINDS}


def preferences_set(*, member: Member, choices: dict[str, bool]) -> None:
    """Record a member's choice per kind (unknown kinds are refused)."""
    unknown = set(choices) - set(KINDS)
    if unknown:
        raise ApplicationError(f"Unknown notification kind {sorted(unknown)[0]!r}.", field="kind")
    current = preferences_of(member=member)
    for kind, email in choices.items():
        if current[kind] != email:
            NotificationPreference.objects.update_or_create(
                member=member, kind=kind, defaults={"email": email}
            )


# --- Weekly expiry digest --------------------------------------------------------------


def expiring_points_notify(*, now: datetime | None = None, program=None) -> int:
    """Tell each member with points expiring within 30 days, once per member per ISO week.

    One aggregate query finds them; the dedupe key (member and week) makes a rerun
    in the same week send nothing. Returns the number of members notified this run.
    """
    now = now or timezone.now()
    lots = PointLot.objects.filter(
        remaining__gt=0,
        pending=False,
        expires_at__gt=now,
        expires_at__lte=now + timedelta(days=EXPIRY_WINDOW_DAYS),
    )
    if program is not None:
        lots = lots.filter(account__program=program)
    due = list(lots.values("account__member_id").annotate(points=Sum("remaining"), first=Min("expires_at")))
    members = Member.objects.select_related("program").in_bulk([row["account__member_id"] for row in due])
    year, week, _ = now.isocalendar()
    sent_before = set(
        Message.objects.filter(
            kind="points_expiring", dedupe_key__endswith=f":{year}-W{week:02d}", member_id__in=members
        ).values_list("member_id", flat=True)
    )
    count = 0
    for row in due:
        member = members[row["account__member_id"]]
        if member.pk in sent_before or member.status != Member.Status.ACTIVE:
            continue
        notify(
            member=member,
            kind="points_expiring",
            context={
                "points": row["points"],
                "first_expiry": timezone.localtime(row["first"], member.program.tz).strftime("%Y-%m-%d"),
                "days": EXPIRY_WINDOW_DAYS,
            },
            dedupe_key=f"points_expiring:{member.pk}:{year}-W{week:02d}",
        )
        count += 1
    return count


# --- Webhooks -------------------------------------------------------------------


def webhook_fanout(*, program_id: int, event: str, event_id: str, data: dict) -> list[int]:
    """A delivery per active endpoint of the program subscribed to `event`, once per event id."""
    return webhook_fanout_many(program_id=program_id, event=event, events=[(event_id, data)])


def webhook_fanout_many(*, program_id: int, event: str, events: list[tuple[str, dict]]) -> list[int]:
    """`webhook_fanout` of several (event id, data) pairs of one event, in a constant number of queries."""
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(program_id=program_id, is_active=True)
        if event in endpoint.events
    ]
    if not endpoints:
        return []
    now = timezone.now()
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                endpoint=endpoint,
                program_id=program_id,
                event=event,
                event_id=event_id,
                payload={"event": event, "id": event_id, "created_at": now.isoformat(), "data": data},
                next_attempt_at=now,
            )
            for event_id, data in events
            for endpoint in endpoints
        ],
        ignore_conflicts=True,
    )
    ids = list(
        WebhookDelivery.objects.filter(
            endpoint__in=endpoints,
            event_id__in=[event_id for event_id, _ in events],
            status=WebhookDelivery.Status.PENDING,
            attempts=0,
        ).values_list("pk", flat=True)
    )
    # With a real broker a worker sends them now; without one (eager tasks) sending here would make
    # the caller wait on the endpoints, so the send_webhooks job picks them up instead.
    if not getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        from loyalty.notifications.tasks import deliver_webhook

        for pk in ids:
            deliver_webhook.delay(pk)
    return ids


def sign(*, secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(
    *,
    secret: str,
    timestamp: int,
    body: bytes,
    signature: str,
    now: float | None = None,
    tolerance: int = 300,
) -> bool:
    """What a receiver does: recompute the HMAC and refuse stale timestamps."""
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret=secret, timestamp=timestamp, body=body), signature)


def backoff(attempts: int) -> timedelta:
    return BACKOFF_BASE * (2 ** max(attempts - 1, 0))


def webhook_attempt(*, delivery_id: int, now: datetime | None = None, force: bool = False) -> WebhookDelivery:
    """Try one delivery now (if due, or `force` for a resend); log the attempt; schedule the retry."""
    now = now or timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:  # another worker holds it, or it is gone
            return WebhookDelivery.objects.get(pk=delivery_id)
        due = delivery.status in (WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING)
        if not force and (not due or delivery.next_attempt_at > now):
            return delivery
        body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(now.timestamp())
        request = urllib.request.Request(
            delivery.endpoint.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "loyalty-webhooks/1",
                "X-Loyalty-Event": delivery.event,
                "X-Loyalty-Delivery": str(delivery.pk),
                "X-Loyalty-Timestamp": str(timestamp),
                "X-Loyalty-Signature": sign(secret=delivery.endpoint.secret, timestamp=timestamp, body=body),
            },
        )
        started = time.monotonic()
        code, error = None, ""
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
                code = response.status
        except urllib.error.HTTPError as failure:
            code, error = failure.code, f"HTTP {failure.code}"
        except Exception as failure:  # refused, timeout, DNS, TLS: all "try again later"
            error = f"{type(failure).__name__}: {failure}"[:500]
        WebhookAttempt.objects.create(
            delivery=delivery,
            attempted_at=now,
            status_code=code,
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        delivery.attempts += 1
        delivery.last_status_code = code
        delivery.last_error = error
        if code is not None and 200 <= code < 300:
            delivery.status = WebhookDelivery.Status.DELIVERED
            delivery.delivered_at = now
        elif delivery.attempts >= MAX_ATTEMPTS and not force:
            delivery.status = WebhookDelivery.Status.DEAD
        else:
            delivery.status = WebhookDelivery.Status.RETRYING
            delivery.next_attempt_at = now + backoff(delivery.attempts)
        delivery.save()
    return delivery


def webhooks_send_due(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """The retry job: every delivery due now, oldest first. Reruns are harmless (each is locked)."""
    now = now or timezone.now()
    ids = list(
        WebhookDelivery.objects.filter(
            Q(status=WebhookDelivery.Status.PENDING) | Q(status=WebhookDelivery.Status.RETRYING),
            next_attempt_at__lte=now,
        )
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    counts = {"tried": 0, "delivered": 0}
    for pk in ids:
        delivery = webhook_attempt(delivery_id=pk, now=now)
        counts["tried"] += 1
        counts["delivered"] += delivery.status == WebhookDelivery.Status.DELIVERED
    return counts


def webhook_resend(*, delivery: WebhookDelivery, now: datetime | None = None) -> WebhookDelivery:
    """An agent's resend: one more try now, whatever the state (a delivered one is sent again)."""
    return webhook_attempt(delivery_id=delivery.pk, now=now, force=True)
