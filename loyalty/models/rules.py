"""Per-program rules that turn business events into points: earning, tiers, promotions, milestones.

All rule models are history-tracked, so a supervisor can see who changed a rule
and when. Counters that change on every posting live in separate untracked rows.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.signals import m2m_changed
from django.dispatch import receiver
from simple_history.models import HistoricalRecords

from loyalty.models.core import ImmutableModel, LedgerEntry, Member, Program

PURCHASE = "purchase"
BUILT_IN_ACTIVITIES = {
    PURCHASE: "Purchase",
    "referral": "Referral",
    "survey": "Survey answered",
    "social_share": "Social share",
    "app_download": "App download",
    "review": "Review written",
}
activity_code_validator = RegexValidator(
    r"^[a-z][a-z0-9_]{1,39}$", "Use 2-40 lower-case letters, digits or underscores, starting with a letter."
)


class EarningRule(models.Model):
    """How one activity earns points in one program.

    Purchases earn `points_per_unit` per currency unit of the amount; other
    activities earn `fixed_points`. A program adds its own activity codes by
    adding rules for them.
    """

    class Rounding(models.TextChoices):
        DOWN = "down", "Round down"
        NEAREST = "nearest", "Round to nearest (half up)"
        UP = "up", "Round up"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="earning_rules")
    activity_code = models.CharField(max_length=40, validators=[activity_code_validator])
    name = models.CharField(max_length=120)
    points_per_unit = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal("0"),
        validators=[MinValueValidator(0)],
        help_text="Points per currency unit of the amount (purchases).",
    )
    fixed_points = models.PositiveIntegerField(default=0, help_text="Points per occurrence (activities).")
    min_amount = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, help_text="Amounts below this earn nothing."
    )
    rounding = models.CharField(max_length=8, choices=Rounding.choices, default=Rounding.DOWN)
    cap_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most points per member per day."
    )
    cap_per_month = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most points per member per calendar month."
    )
    pending_days = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Waiting days; empty: the program's setting for purchases, none otherwise.",
    )
    expiry_months = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Overrides the program's expiry: points expire N months after earning.",
    )
    active_from = models.DateTimeField(null=True, blank=True)
    active_until = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["program", "activity_code"]
        constraints = [
            models.UniqueConstraint(fields=["program", "activity_code"], name="rule_code_unique_per_program"),
            models.CheckConstraint(
                condition=Q(points_per_unit__gt=0) | Q(fixed_points__gt=0), name="rule_earns_something"
            ),
            models.CheckConstraint(
                condition=Q(active_until__isnull=True)
                | Q(active_from__isnull=True)
                | Q(active_until__gt=models.F("active_from")),
                name="rule_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.program.slug}: {self.activity_code}"


class Tier(models.Model):
    """A level reached with `threshold` qualifying points over the program's rolling window."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="tiers")
    name = models.CharField(max_length=60)
    rank = models.PositiveSmallIntegerField(help_text="1 is the entry tier; higher is better.")
    threshold = models.PositiveIntegerField(help_text="Qualifying points needed over the window.")
    multiplier = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("1.00"),
        validators=[MinValueValidator(Decimal("1"))],
        help_text="Earned points are multiplied by this (1.5 = 50% more).",
    )
    benefits = models.TextField(blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["program", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["program", "rank"], name="tier_rank_unique"),
            models.UniqueConstraint(fields=["program", "threshold"], name="tier_threshold_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.threshold}+)"


class TierChange(models.Model):
    """Every tier move of a member, with its reason; written once, never edited."""

    class Direction(models.TextChoices):
        UPGRADE = "up", "Upgrade"
        DOWNGRADE = "down", "Downgrade"

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="tier_changes")
    from_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    to_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    direction = models.CharField(max_length=4, choices=Direction.choices)
    qualifying_points = models.BigIntegerField()
    reason = models.CharField(max_length=200)
    actor_label = models.CharField(max_length=120)
    changed_at = models.DateTimeField()

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.from_tier_id} -> {self.to_tier_id}"


class Promotion(models.Model):
    """A time-boxed boost: multiply earned points, or add a fixed bonus per qualifying activity."""

    class Kind(models.TextChoices):
        MULTIPLIER = "multiplier", "Multiply base points"
        FIXED_BONUS = "bonus", "Fixed bonus points"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="promotions")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    multiplier = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("1.00"),
        validators=[MinValueValidator(Decimal("1"))],
        help_text="For multipliers: 2 = double base points.",
    )
    bonus_points = models.PositiveIntegerField(default=0, help_text="For fixed bonuses.")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    activity_codes = models.JSONField(
        default=list, blank=True, help_text="Activity codes it applies to; empty: every activity."
    )
    tiers = models.ManyToManyField(
        Tier, blank=True, help_text="Tiers it applies to; none selected: everyone."
    )
    budget_points = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most points it may award in total; empty: no budget."
    )
    max_uses = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most times it may apply in total."
    )
    is_active = models.BooleanField(default=True)

    history = HistoricalRecords(m2m_fields=[tiers])

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="promotion_window_ordered"
            ),
            models.CheckConstraint(
                condition=Q(kind="multiplier", multiplier__gt=1) | Q(kind="bonus", bonus_points__gt=0),
                name="promotion_does_something",
            ),
        ]

    def __str__(self) -> str:
        return self.name


@receiver(m2m_changed, sender=Promotion.tiers.through, dispatch_uid="promotion_tiers_same_program")
def _promotion_tiers_of_its_program(sender, instance, action, reverse, pk_set, **kwargs):
    """A promotion scoped to another program's tier would apply to nobody: refuse it on every path
    (admin, services, shell), not only in the admin form. The M2M cannot be checked in clean()."""
    if action != "pre_add" or not pk_set:
        return
    if reverse:  # tier.promotion_set.add(...): `instance` is the tier
        foreign = Promotion.objects.filter(pk__in=pk_set).exclude(program_id=instance.program_id)
    else:
        foreign = Tier.objects.filter(pk__in=pk_set).exclude(program_id=instance.program_id)
    if foreign.exists():
        raise ValidationError({"tiers": "Choose tiers of the promotion's own program only."})


class PromotionUsage(models.Model):
    """How much of a promotion's budget is spent. Changes on every posting, so not history-tracked."""

    promotion = models.OneToOneField(Promotion, on_delete=models.CASCADE, related_name="usage")
    points_awarded = models.BigIntegerField(default=0)
    uses = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.promotion_id}: {self.uses} uses, {self.points_awarded} points"


class Challenge(models.Model):
    """N qualifying actions in a period pay a bonus, once per member."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="challenges")
    name = models.CharField(max_length=120)
    activity_code = models.CharField(max_length=40, validators=[activity_code_validator])
    required_count = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    bonus_points = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    is_active = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="challenge_window_ordered"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Streak(models.Model):
    """Activity on `length` consecutive days (or weeks) pays a bonus; each completed run pays once."""

    class Period(models.TextChoices):
        DAY = "day", "Consecutive days"
        WEEK = "week", "Consecutive weeks"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="streaks")
    name = models.CharField(max_length=120)
    activity_code = models.CharField(max_length=40, validators=[activity_code_validator])
    period = models.CharField(max_length=4, choices=Period.choices)
    length = models.PositiveSmallIntegerField(validators=[MinValueValidator(2)])
    bonus_points = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    is_active = models.BooleanField(default=True)

    history = HistoricalRecords()

    def __str__(self) -> str:
        return self.name


class MilestoneRule(models.Model):
    """Birthday and anniversary bonuses (once a year) and lifetime-points milestones (once ever)."""

    class Kind(models.TextChoices):
        BIRTHDAY = "birthday", "Birthday"
        ANNIVERSARY = "anniversary", "Membership anniversary"
        LIFETIME = "lifetime", "Lifetime points milestone"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="milestones")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    points = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    threshold = models.PositiveIntegerField(
        null=True, blank=True, help_text="Lifetime milestones: lifetime earned points that trigger it."
    )
    is_active = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="lifetime", threshold__isnull=False)
                | (~Q(kind="lifetime") & Q(threshold=None)),
                name="milestone_threshold_only_for_lifetime",
            ),
            models.UniqueConstraint(
                fields=["program", "kind"], condition=~Q(kind="lifetime"), name="milestone_one_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.points}"


class PointsShortfall(models.Model):
    """Points a return should have taken back but could not (already spent, debt not allowed).

    Flagged for an agent to decide; closed with a note.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="shortfalls")
    entry = models.ForeignKey(
        LedgerEntry,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The earn entry returned, or the challenge or streak bonus the return undid.",
    )
    points = models.PositiveIntegerField()
    reference = models.CharField(max_length=120)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # The return's reference: a replayed return finds its flag instead of flagging twice.
            models.UniqueConstraint(fields=["program", "reference"], name="shortfall_reference_unique")
        ]

    def __str__(self) -> str:
        return f"{self.points} points short on {self.reference}"


class PurchaseReturn(ImmutableModel):
    """One accepted return of a purchase, whatever it took back: written once, never edited.

    The record of the return itself, not of its points (those are the reversal
    entry and any shortfall): the amounts returned add up here even when nothing
    could be taken (points spent and flagged, or expired), a retry with the same
    reference finds it (same request: a replay; another request: a conflict), and
    `completes_purchase` marks the return after which the purchase no longer counts
    as a qualifying action for challenges and streaks.
    """

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="purchase_returns")
    purchase = models.ForeignKey(
        LedgerEntry, on_delete=models.PROTECT, related_name="purchase_returns", help_text="The earn entry."
    )
    reference = models.CharField(max_length=120, help_text="The return's own reference.")
    returned_amount = models.DecimalField(
        max_digits=12, decimal_places=2, help_text="What this return counted (never past the purchase)."
    )
    points = models.PositiveIntegerField(default=0, help_text="Points taken back.")
    shortfall = models.PositiveIntegerField(default=0, help_text="Points flagged for an agent.")
    expired = models.PositiveIntegerField(default=0, help_text="Points not taken: they had expired.")
    entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    completes_purchase = models.BooleanField(default=False)
    note = models.CharField(max_length=300, blank=True, help_text="What the caller was told.")
    request = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["program", "reference"], name="return_reference_unique"),
            models.UniqueConstraint(
                fields=["purchase"], condition=Q(completes_purchase=True), name="return_completes_once"
            ),
        ]

    def __str__(self) -> str:
        return f"Return {self.reference} of entry {self.purchase_id}"


class UnpaidActivity(ImmutableModel):
    """An activity that earned nothing (below the minimum amount, capped to zero): written once.

    It has no ledger entry, yet its reference is taken: a retry replays it (and
    does not announce it again), the reference reused for another event is a
    conflict, and a return of such a purchase answers "nothing to take back"
    instead of "no such purchase".
    """

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    idempotency_key = models.CharField(max_length=200)
    activity_code = models.CharField(max_length=40)
    reference = models.CharField(max_length=120)
    occurred_at = models.DateTimeField()
    breakdown = models.JSONField(default=dict, help_text="The calculation and the request, as on an entry.")
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "unpaid activities"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "idempotency_key"], name="unpaid_key_unique_per_program"
            )
        ]

    def __str__(self) -> str:
        return f"{self.activity_code} {self.reference} (no points)"
