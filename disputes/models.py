"""Dispute tickets, their comments, SLA pauses, adjustment requests, and per-program policy.

A ticket's SLA due times are stored (computed by `disputes.sla` in Python, so
every database agrees) and moved forward when a pause ends; while a ticket is
awaiting the member, `paused_at` is set and the clock does not run. That lets
the queue tell overdue and near-due tickets with a plain comparison in SQL.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from simple_history.models import HistoricalRecords

from loyalty.models import LedgerEntry, Member, Program, Redemption


class Priority(models.IntegerChoices):
    # Integers so "most urgent first" is a plain ORDER BY.
    LOW = 1, "Low"
    NORMAL = 2, "Normal"
    HIGH = 3, "High"
    URGENT = 4, "Urgent"


class DisputePolicy(models.Model):
    """How one program runs its disputes. A program without a row uses `DEFAULTS` (see disputes.policy)."""

    class Assignment(models.TextChoices):
        NONE = "none", "No automatic assignment"
        ROUND_ROBIN = "round_robin", "Round robin"
        LEAST_BUSY = "least_busy", "Least busy agent"

    program = models.OneToOneField(Program, on_delete=models.CASCADE, related_name="dispute_policy")
    approval_threshold = models.PositiveIntegerField(
        default=500,
        help_text="Adjustments of more than this many points (up or down) need a supervisor's approval.",
    )
    reopen_window_days = models.PositiveSmallIntegerField(
        default=14, help_text="Days after resolution during which a ticket may be reopened."
    )
    assignment = models.CharField(max_length=12, choices=Assignment.choices, default=Assignment.NONE)
    first_response_hours_low = models.PositiveIntegerField(default=48, validators=[MinValueValidator(1)])
    first_response_hours_normal = models.PositiveIntegerField(default=24, validators=[MinValueValidator(1)])
    first_response_hours_high = models.PositiveIntegerField(default=8, validators=[MinValueValidator(1)])
    first_response_hours_urgent = models.PositiveIntegerField(default=2, validators=[MinValueValidator(1)])
    resolution_hours_low = models.PositiveIntegerField(default=240, validators=[MinValueValidator(1)])
    resolution_hours_normal = models.PositiveIntegerField(default=120, validators=[MinValueValidator(1)])
    resolution_hours_high = models.PositiveIntegerField(default=48, validators=[MinValueValidator(1)])
    resolution_hours_urgent = models.PositiveIntegerField(default=8, validators=[MinValueValidator(1)])

    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "dispute policies"
        constraints = [
            models.CheckConstraint(
                name="dispute_policy_targets_positive",
                condition=Q(first_response_hours_low__gte=1)
                & Q(first_response_hours_normal__gte=1)
                & Q(first_response_hours_high__gte=1)
                & Q(first_response_hours_urgent__gte=1)
                & Q(resolution_hours_low__gte=1)
                & Q(resolution_hours_normal__gte=1)
                & Q(resolution_hours_high__gte=1)
                & Q(resolution_hours_urgent__gte=1),
            )
        ]

    def __str__(self) -> str:
        return f"Dispute policy of {self.program}"


class Dispute(models.Model):
    class Category(models.TextChoices):
        MISSING_POINTS = "missing_points", "Missing points"
        WRONG_BALANCE = "wrong_balance", "Wrong balance"
        REDEMPTION_PROBLEM = "redemption", "Redemption problem"
        REFERRAL_NOT_CREDITED = "referral", "Referral not credited"
        EXPIRED_IN_ERROR = "expired", "Expired in error"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        IN_PROGRESS = "in_progress", "In progress"
        AWAITING_MEMBER = "awaiting_member", "Awaiting member"
        ESCALATED = "escalated", "Escalated"
        RESOLVED = "resolved", "Resolved"
        REJECTED = "rejected", "Rejected"

    class Channel(models.TextChoices):
        PORTAL = "portal", "Member portal"
        AGENT = "agent", "Agent (phone, email, chat)"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="disputes")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="disputes")
    category = models.CharField(max_length=20, choices=Category.choices)
    subject = models.CharField(max_length=120)
    description = models.TextField()
    related_entry = models.ForeignKey(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    related_redemption = models.ForeignKey(
        Redemption, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    disputed_on = models.DateField(
        null=True, blank=True, help_text="The day the member says things went wrong (program time zone)."
    )
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.PORTAL)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    assigned_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    # The SLA clock: due times already include every finished pause; `paused_at` marks a running one.
    first_response_due = models.DateTimeField()
    resolution_due = models.DateTimeField()
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_seconds = models.PositiveBigIntegerField(default=0, help_text="Total finished pause time.")
    first_response_at = models.DateTimeField(null=True, blank=True)
    first_response_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Clock time (pauses left out) from opening to the first reply and to the resolution:
    # computed by the service in Python so averages are a plain AVG() on every database.
    first_response_seconds = models.PositiveBigIntegerField(null=True, blank=True)
    resolution_seconds = models.PositiveBigIntegerField(null=True, blank=True)
    escalated_at = models.DateTimeField(
        null=True, blank=True, help_text="When the SLA job escalated it (once per resolution cycle)."
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolution = models.TextField(blank=True)
    # Whether the resolution was inside the resolution SLA; kept so reports need no recomputation.
    resolved_within_sla = models.BooleanField(null=True, blank=True)
    reopened_count = models.PositiveSmallIntegerField(default=0)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-priority", "resolution_due", "id"]
        indexes = [
            models.Index(fields=["program", "status", "-priority", "resolution_due"], name="dispute_queue"),
            models.Index(fields=["assignee", "status"], name="dispute_assignee"),
            models.Index(fields=["resolved_by", "resolved_at"], name="dispute_resolved"),
            models.Index(fields=["member", "-created_at"], name="dispute_member"),
        ]
        constraints = [
            models.CheckConstraint(
                name="dispute_resolved_has_time",
                condition=~Q(status__in=["resolved", "rejected"]) | Q(resolved_at__isnull=False),
            ),
            models.CheckConstraint(
                name="dispute_paused_only_awaiting",
                condition=Q(paused_at__isnull=True) | Q(status="awaiting_member"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference}: {self.subject}"

    def get_absolute_url(self) -> str:
        return reverse("disputes:detail", kwargs={"pk": self.pk})

    @property
    def reference(self) -> str:
        return f"D-{self.pk:06d}" if self.pk else "D-new"

    @property
    def is_closed(self) -> bool:
        return self.status in (self.Status.RESOLVED, self.Status.REJECTED)


class DisputePause(models.Model):
    """One stretch of time the SLA clock stood still (the ticket was awaiting the member)."""

    dispute = models.ForeignKey(Dispute, on_delete=models.CASCADE, related_name="pauses")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["started_at", "id"]
        constraints = [
            models.CheckConstraint(
                name="dispute_pause_ends_after_start",
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=models.F("started_at")),
            ),
            models.UniqueConstraint(
                fields=["dispute"], condition=Q(ended_at__isnull=True), name="dispute_one_open_pause"
            ),
        ]

    def __str__(self) -> str:
        return f"Pause of {self.dispute_id} from {self.started_at}"


class Comment(models.Model):
    """A reply the member sees, or an internal note only staff see."""

    class Visibility(models.TextChoices):
        REPLY = "reply", "Reply to the member"
        INTERNAL = "internal", "Internal note"

    dispute = models.ForeignKey(Dispute, on_delete=models.CASCADE, related_name="comments")
    visibility = models.CharField(max_length=10, choices=Visibility.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    by_member = models.BooleanField(default=False, help_text="Written by the member in the portal.")
    body = models.TextField()
    created_at = models.DateTimeField()

    history = HistoricalRecords()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["dispute", "created_at"], name="comment_dispute")]
        constraints = [
            models.CheckConstraint(
                name="comment_member_writes_replies", condition=Q(by_member=False) | Q(visibility="reply")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_visibility_display()} on {self.dispute_id}"


class AdjustmentRequest(models.Model):
    """A point correction asked for while resolving a dispute (maker-checker above the threshold)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Awaiting approval"
        APPLIED = "applied", "Applied"
        REJECTED = "rejected", "Rejected"

    dispute = models.ForeignKey(Dispute, on_delete=models.PROTECT, related_name="adjustments")
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    points = models.IntegerField(help_text="Points to add (positive) or remove (negative).")
    reason = models.CharField(max_length=500)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.CharField(max_length=500, blank=True)
    entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The form's one-time token: a double-submitted request form creates one request.
    request_key = models.CharField(max_length=64)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["program", "status"], name="adjustment_program_status")]
        constraints = [
            models.UniqueConstraint(fields=["dispute", "request_key"], name="adjustment_request_key_unique"),
            models.CheckConstraint(name="adjustment_points_not_zero", condition=~Q(points=0)),
            models.CheckConstraint(
                name="adjustment_applied_has_entry",
                condition=~Q(status="applied") | Q(entry__isnull=False),
            ),
            models.CheckConstraint(
                name="adjustment_rejected_has_reason",
                condition=~Q(status="rejected") | ~Q(decision_reason=""),
            ),
        ]

    def __str__(self) -> str:
        return f"Adjustment {self.points:+d} on {self.dispute_id} ({self.get_status_display()})"

    @property
    def idempotency_key(self) -> str:
        return f"dispute-adjustment:{self.pk}"
