"""The message log, members' opt-outs, and outbound webhooks with their delivery log."""

from __future__ import annotations

import secrets

from django.db import models
from django.urls import reverse
from simple_history.models import HistoricalRecords

from loyalty.models import Member, Program

# What members can hear about (and opt out of), and what webhooks can subscribe to.
KINDS = {
    "tier_changed": "Tier changes",
    "points_expiring": "Points expiring soon (weekly digest)",
    "redemption_status": "Redemption updates",
    "dispute_reply": "Replies to my disputes",
    "dispute_resolved": "Dispute resolutions",
    "referral_reward": "Referral rewards",
}
POINTS_POSTED = "points_posted"
WEBHOOK_EVENTS = {**KINDS, POINTS_POSTED: "Points posted"}


def _secret() -> str:
    return secrets.token_urlsafe(32)


class NotificationPreference(models.Model):
    """A member's choice for one kind; no row means the default: send."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="notification_preferences")
    kind = models.CharField(max_length=40)
    email = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["member", "kind"], name="preference_unique_kind")]

    def __str__(self) -> str:
        return f"{self.member_id} {self.kind}: {'on' if self.email else 'off'}"


class Message(models.Model):
    """One message to a member, once per dedupe key: the log of everything sent (or not, and why).

    Not history-tracked: it is itself a log; its status only moves queued -> sent/skipped/failed.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        OPTED_OUT = "opted_out", "Not sent: member opted out"
        NO_ADDRESS = "no_address", "Not sent: no email address"
        FAILED = "failed", "Failed"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="messages")
    kind = models.CharField(max_length=40)
    dedupe_key = models.CharField(max_length=200, unique=True)
    channel = models.CharField(max_length=10, default="email")
    to = models.CharField(max_length=254, blank=True)
    subject = models.CharField(max_length=200, blank=True)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    context = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["member", "-id"], name="message_member_recent")]

    def __str__(self) -> str:
        return f"{self.kind} to {self.member_id} ({self.status})"


class WebhookEndpoint(models.Model):
    """A client's URL for the program's events; deliveries are signed with `secret`."""

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, help_text=f"Event names: {', '.join(WEBHOOK_EVENTS)}.")
    secret = models.CharField(max_length=100, default=_secret, help_text="Shared secret for the HMAC.")
    description = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords(excluded_fields=["secret"])

    class Meta:
        ordering = ["program", "url"]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint, tried until it gets a 2xx or runs out of attempts."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        RETRYING = "retrying", "Failed, will retry"
        DEAD = "dead", "Failed, gave up"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    event = models.CharField(max_length=40)
    event_id = models.CharField(max_length=200)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="delivery_once_per_event"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due",
                condition=models.Q(status__in=["pending", "retrying"]),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.endpoint_id} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("notifications:webhook_detail", kwargs={"pk": self.pk})


class WebhookAttempt(models.Model):
    """One HTTP try of a delivery: what the endpoint answered, or why it could not."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery", "id"]

    def __str__(self) -> str:
        return f"attempt on {self.delivery_id}: {self.status_code or self.error}"
