"""Referral codes and links, clicks, referrals, their fraud signals and each program's policy.

Points never live here: rewards are ledger entries (loyalty.ledger.credit) whose
`subject` is the Referral, each with its own idempotency key derived from the
referral's id, so a referral pays each side at most once whatever happens.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from simple_history.models import HistoricalRecords

from loyalty.models import ImmutableModel, LedgerEntry, Member, Program


class ReferralPolicy(models.Model):
    """A program's referral scheme. A program without an active policy has no referral scheme:
    codes of its members are refused at sign-up and the member page says so."""

    program = models.OneToOneField(Program, on_delete=models.PROTECT, related_name="referral_policy")
    is_active = models.BooleanField(default=True)
    referrer_points = models.PositiveIntegerField(
        default=500, validators=[MinValueValidator(1)], help_text="Points to the member who referred."
    )
    referee_points = models.PositiveIntegerField(
        default=250, validators=[MinValueValidator(1)], help_text="Welcome bonus to the new member."
    )
    min_purchase_amount = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=Decimal("20.00"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="The first purchase at or above this amount qualifies the referral.",
    )
    window_days = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(1)],
        help_text="Days after sign-up in which the qualifying purchase must happen.",
    )
    fraud_threshold = models.PositiveSmallIntegerField(
        default=50, help_text="Rewards are held for review when the fraud score reaches this."
    )
    # One weight per signal; 0 switches a signal off.
    weight_self_email = models.PositiveSmallIntegerField(default=100)
    weight_self_phone = models.PositiveSmallIntegerField(default=100)
    weight_shared_device = models.PositiveSmallIntegerField(default=60)
    weight_shared_ip = models.PositiveSmallIntegerField(
        default=20, help_text="Keep below the threshold: offices and homes share an IP address."
    )
    weight_velocity = models.PositiveSmallIntegerField(default=40)
    weight_circular = models.PositiveSmallIntegerField(default=80)
    weight_cap = models.PositiveSmallIntegerField(default=100)
    weight_throwaway_email = models.PositiveSmallIntegerField(default=40)
    velocity_per_day = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1)],
        help_text="More sign-ups than this per referrer in one day is a velocity signal.",
    )
    cap_per_month = models.PositiveSmallIntegerField(
        null=True, blank=True, default=10, help_text="Rewarded referrals per referrer per month; empty: none."
    )
    cap_lifetime = models.PositiveSmallIntegerField(
        null=True, blank=True, default=50, help_text="Rewarded referrals per referrer ever; empty: none."
    )
    ip_window_hours = models.PositiveSmallIntegerField(
        default=24,
        validators=[MinValueValidator(1)],
        help_text="A shared IP counts only when seen this close to the sign-up.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "referral policies"

    def __str__(self) -> str:
        return f"Referral policy of {self.program}"


class ReferralCode(models.Model):
    """One share code per member: short, readable aloud (no 0/O, 1/I/L), unique across programs."""

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    member = models.OneToOneField(Member, on_delete=models.PROTECT, related_name="referral_code")
    code = models.CharField(max_length=16, unique=True)
    is_active = models.BooleanField(default=True, help_text="An inactive code is refused at sign-up.")
    created_at = models.DateTimeField(default=timezone.now)

    history = HistoricalRecords()

    def __str__(self) -> str:
        return self.code

    def get_share_path(self) -> str:
        return reverse("referrals:share", kwargs={"code": self.code})


class ReferralClick(ImmutableModel):
    """A visit to a share link: a log row, never changed."""

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    code = models.ForeignKey(ReferralCode, on_delete=models.PROTECT, related_name="clicks")
    clicked_at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    device_id = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["program", "clicked_at"], name="referral_click_period"),
            models.Index(fields=["code", "device_id"], name="referral_click_device"),
        ]

    def __str__(self) -> str:
        return f"Click on {self.code_id} at {self.clicked_at:%Y-%m-%d %H:%M}"


class DeviceSighting(ImmutableModel):
    """A member seen with a device cookie and an IP (at sign-up, or on their referrals page).

    One row per member, device, IP and day: enough to tell a referee who signs up
    from the referrer's browser or network, without a row per page view.
    """

    class Context(models.TextChoices):
        SIGNUP = "signup", "Sign-up"
        REFERRALS_PAGE = "page", "Referrals page"

    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    device_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    seen_on = models.DateField()
    seen_at = models.DateTimeField()
    context = models.CharField(max_length=8, choices=Context.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["member", "device_id", "ip", "seen_on"], name="device_sighting_once_a_day"
            )
        ]
        indexes = [
            models.Index(fields=["device_id"], name="device_sighting_device"),
            models.Index(fields=["ip", "seen_at"], name="device_sighting_ip"),
        ]


class Referral(models.Model):
    """One member bringing another: pending -> qualified -> rewarded, or held -> rewarded | rejected.

    `qualified` is only a resting state when the rewards could not be posted at
    qualification (the ledger refused); an agent then approves it like a held one.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        QUALIFIED = "qualified", "Qualified"
        HELD = "held", "Held for review"
        REWARDED = "rewarded", "Rewarded"
        REJECTED = "rejected", "Rejected"

    class Channel(models.TextChoices):
        PORTAL = "portal", "Portal sign-up"
        API = "api", "Client API"
        AGENT = "agent", "Agent"
        IMPORT = "import", "File import"
        DEMO = "demo", "Demo data"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+")
    referrer = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="referrals_made")
    # One referral per member, whoever tries to attribute it: the first valid one wins.
    referee = models.OneToOneField(Member, on_delete=models.PROTECT, related_name="referral")
    code = models.ForeignKey(ReferralCode, on_delete=models.PROTECT, related_name="referrals")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    signed_up_at = models.DateTimeField(help_text="When the referee joined; the window counts from here.")
    signup_ip = models.GenericIPAddressField(null=True, blank=True)
    signup_user_agent = models.CharField(max_length=300, blank=True)
    signup_device_id = models.CharField(max_length=64, blank=True)
    click = models.ForeignKey(
        ReferralClick, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    attributed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    attribution_reason = models.CharField(max_length=500, blank=True)
    qualified_at = models.DateTimeField(null=True, blank=True)
    qualifying_reference = models.CharField(max_length=120, blank=True)
    qualifying_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    fraud_score = models.PositiveSmallIntegerField(null=True, blank=True)
    held_at = models.DateTimeField(null=True, blank=True)
    rewarded_at = models.DateTimeField(null=True, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decision_reason = models.CharField(max_length=500, blank=True)
    referrer_entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    referee_entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-signed_up_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(referrer=models.F("referee")), name="referral_not_self"),
            models.CheckConstraint(
                condition=~Q(status="rewarded")
                | Q(referrer_entry__isnull=False, referee_entry__isnull=False, rewarded_at__isnull=False),
                name="referral_rewarded_has_entries",
            ),
            models.CheckConstraint(
                condition=~Q(status="rejected") | ~Q(decision_reason=""), name="referral_rejected_has_reason"
            ),
        ]
        indexes = [
            models.Index(fields=["program", "status", "signed_up_at"], name="referral_queue"),
            models.Index(fields=["referrer", "signed_up_at"], name="referral_by_referrer"),
            models.Index(fields=["program", "qualified_at"], name="referral_qualified"),
            models.Index(fields=["signup_device_id"], name="referral_device"),
        ]

    def __str__(self) -> str:
        return f"Referral #{self.pk}: {self.referrer_id} -> {self.referee_id} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("referrals:detail", kwargs={"pk": self.pk})


class ReferralSignal(ImmutableModel):
    """One fraud signal found when a referral qualified: what, how much it weighs, and why."""

    class Kind(models.TextChoices):
        SELF_EMAIL = "self_email", "Same email as the referrer"
        SELF_PHONE = "self_phone", "Same phone as the referrer"
        SHARED_DEVICE = "shared_device", "Shared device"
        SHARED_IP = "shared_ip", "Shared IP address"
        VELOCITY = "velocity", "Many sign-ups in a day"
        CIRCULAR = "circular", "Circular referral"
        CAP = "cap", "Referrer over a cap"
        THROWAWAY_EMAIL = "throwaway_email", "Throwaway email domain"

    referral = models.ForeignKey(Referral, on_delete=models.PROTECT, related_name="signals")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    weight = models.PositiveSmallIntegerField()
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-weight", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["referral", "kind"], name="referral_signal_once"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.weight})"
