"""The rewards catalogue and redemptions."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from loyalty.models.core import LedgerEntry, Member, Program
from loyalty.models.rules import Tier


class Reward(models.Model):
    class Fulfilment(models.TextChoices):
        VOUCHER = "voucher", "Voucher code"
        SHIPMENT = "shipment", "Shipped item"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="rewards")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    cost_points = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    fulfilment = models.CharField(max_length=10, choices=Fulfilment.choices, default=Fulfilment.VOUCHER)
    # Set by people (history-tracked); each redemption moves it by one, and that
    # movement's record is the Redemption row itself.
    stock = models.PositiveIntegerField(null=True, blank=True, help_text="Items left; empty: unlimited.")
    min_tier = models.ForeignKey(
        Tier,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Only members at this tier or above may redeem it.",
    )
    active_from = models.DateTimeField(null=True, blank=True)
    active_until = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["program", "cost_points", "name"]
        constraints = [models.CheckConstraint(condition=Q(cost_points__gt=0), name="reward_cost_positive")]

    def __str__(self) -> str:
        return f"{self.name} ({self.cost_points} points)"

    def clean(self):
        super().clean()
        if self.min_tier_id and self.program_id and self.min_tier.program_id != self.program_id:
            raise ValidationError({"min_tier": "Choose a tier of the reward's own program."})


class Redemption(models.Model):
    """A member's request for a reward. The points leave the balance when it is requested."""

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        APPROVED = "approved", "Approved"
        FULFILLED = "fulfilled", "Fulfilled"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="redemptions")
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, related_name="redemptions")
    points = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.REQUESTED)
    idempotency_key = models.CharField(max_length=200)
    channel = models.CharField(max_length=10, choices=LedgerEntry.Source.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    debit_entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="+")
    refund_entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    voucher_code = models.CharField(max_length=40, blank=True)
    shipping_note = models.TextField(blank=True)
    decision_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["program", "idempotency_key"], name="redemption_key_unique"),
            models.CheckConstraint(
                condition=Q(status__in=["rejected", "cancelled"], refund_entry__isnull=False)
                | (~Q(status__in=["rejected", "cancelled"]) & Q(refund_entry__isnull=True)),
                name="redemption_refunded_when_closed",
            ),
            models.UniqueConstraint(
                fields=["voucher_code"], condition=~Q(voucher_code=""), name="redemption_voucher_unique"
            ),
        ]
        indexes = [models.Index(fields=["program", "status", "created_at"], name="redemption_queue")]

    def __str__(self) -> str:
        return f"{self.reward} for {self.member_id} ({self.status})"
