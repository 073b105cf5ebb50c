"""Programs, members and the points ledger.

Only `loyalty.ledger` writes `PointsAccount`, `LedgerEntry`, `PointLot` and
`PointAllocation` rows; everything else reads them or calls the ledger.
"""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from simple_history.models import HistoricalRecords

from loyalty.numbers import is_valid_membership_number

TIME_ZONE_CHOICES = sorted((tz, tz) for tz in zoneinfo.available_timezones())


class Program(models.Model):
    """One client brand's loyalty scheme: scopes members, rules, keys and agents."""

    class ExpiryPolicy(models.TextChoices):
        NEVER = "never", "Points never expire"
        MONTHS_AFTER_EARN = "months", "N months after earning"
        END_OF_NTH_YEAR = "year_end", "End of the Nth calendar year after earning"

    class NegativeBalancePolicy(models.TextChoices):
        FORBID = "forbid", "Never below zero; shortfalls are flagged for an agent"
        ALLOW_DEBT = "allow_debt", "Balance may go negative as a recorded debt"

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    currency = models.CharField(
        max_length=3,
        default="EUR",
        validators=[RegexValidator(r"^[A-Z]{3}$", "Use an ISO 4217 code.")],
    )
    time_zone = models.CharField(max_length=64, choices=TIME_ZONE_CHOICES, default="UTC")
    expiry_policy = models.CharField(
        max_length=10, choices=ExpiryPolicy.choices, default=ExpiryPolicy.MONTHS_AFTER_EARN
    )
    expiry_months = models.PositiveSmallIntegerField(default=12, help_text="For 'N months after earning': N.")
    expiry_years = models.PositiveSmallIntegerField(
        default=1, help_text="For 'end of the Nth year': N (1 = end of the year after earning)."
    )
    pending_days = models.PositiveSmallIntegerField(
        default=0, help_text="Days earned points wait before they can be spent (returns window)."
    )
    negative_balance_policy = models.CharField(
        max_length=12, choices=NegativeBalancePolicy.choices, default=NegativeBalancePolicy.FORBID
    )
    adjustment_approval_threshold = models.PositiveIntegerField(
        default=500,
        help_text="Manual adjustments above this many points need a supervisor's approval.",
    )
    point_value = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=0.01,
        help_text="Value of one point in the currency.",
    )
    tier_window_days = models.PositiveSmallIntegerField(
        default=365, help_text="Tiers count qualifying points earned over this many days."
    )
    is_active = models.BooleanField(default=True)
    staff = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="loyalty_programs",
        help_text="Agents and supervisors who work on this program.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords(m2m_fields=[staff])

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(expiry_months__gte=1), name="program_expiry_months_positive"),
            models.CheckConstraint(condition=Q(expiry_years__gte=1), name="program_expiry_years_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class Member(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        CLOSED = "closed", "Closed"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="members")
    membership_number = models.CharField(
        max_length=20, unique=True, help_text="Digits with a Luhn check digit at the end."
    )
    first_name = models.CharField(max_length=80)
    last_name = models.CharField(max_length=80)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=32, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    joined_on = models.DateField(default=timezone.localdate)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    tier = models.ForeignKey(
        "loyalty.Tier", null=True, blank=True, on_delete=models.PROTECT, related_name="members"
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="member",
        help_text="The portal login of this member, if any.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        indexes = [
            models.Index(fields=["program", "email"]),
            models.Index(fields=["program", "phone"]),
            models.Index(fields=["program", "last_name", "first_name"]),
        ]

    def __str__(self) -> str:
        return f"{self.full_name} ({self.membership_number})"

    def get_absolute_url(self) -> str:
        return reverse("loyalty:member_detail", kwargs={"number": self.membership_number})

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def clean(self) -> None:
        if self.membership_number and not is_valid_membership_number(self.membership_number):
            raise ValidationError({"membership_number": "This number's check digit is wrong."})
        if self.email:
            self.email = self.email.strip().lower()


class PointsAccount(models.Model):
    """The running totals of one member. Not history-tracked: the ledger is its history.

    `balance` is spendable points (negative only as a recorded debt where the
    program allows it); `pending` is earned points still waiting to become
    spendable. Both are maintained by `loyalty.ledger` under a row lock.
    """

    member = models.OneToOneField(Member, on_delete=models.PROTECT, related_name="account")
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="accounts")
    balance = models.BigIntegerField(default=0)
    pending = models.BigIntegerField(default=0)
    lifetime_earned = models.BigIntegerField(default=0)
    lifetime_redeemed = models.BigIntegerField(default=0)
    lifetime_expired = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(pending__gte=0), name="account_pending_not_negative"),
            models.CheckConstraint(condition=Q(lifetime_earned__gte=0), name="account_earned_not_negative"),
            models.CheckConstraint(condition=Q(lifetime_expired__gte=0), name="account_expired_not_negative"),
        ]

    def __str__(self) -> str:
        return f"Account of {self.member_id}: {self.balance}"


class ImmutableQuerySet(models.QuerySet):
    """Bulk updates and deletes would bypass the per-row guard, so they are refused too."""

    def update(self, **kwargs):
        raise ImmutableRecordError(f"{self.model.__name__} rows are immutable.")

    def delete(self):
        raise ImmutableRecordError(f"{self.model.__name__} rows are immutable.")

    _raw_delete = delete


class ImmutableRecordError(Exception):
    pass


class ImmutableModel(models.Model):
    """A row that may be inserted and never changed. PostgreSQL enforces it with a trigger too."""

    objects = ImmutableQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableRecordError(f"{type(self).__name__} rows are immutable; post a correction.")
        # Always an INSERT: a new instance carrying an existing pk must fail, not overwrite.
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRecordError(f"{type(self).__name__} rows are immutable; post a correction.")


class LedgerEntry(ImmutableModel):
    class Kind(models.TextChoices):
        EARN = "earn", "Earned"
        BONUS = "bonus", "Bonus"
        REDEEM = "redeem", "Redeemed"
        ADJUST = "adjust", "Adjustment"
        EXPIRE = "expire", "Expired"
        REVERSE = "reverse", "Reversal"
        REFUND = "refund", "Refund"
        ACTIVATE = "activate", "Became available"

    class Source(models.TextChoices):
        API = "api", "Client API"
        IMPORT = "import", "File import"
        AGENT = "agent", "Agent"
        PORTAL = "portal", "Member portal"
        JOB = "job", "Scheduled job"
        SYSTEM = "system", "System"

    # No single-column indexes on program, account and subject_type: the composite indexes
    # below lead with them and serve every lookup, and each index costs every posting a write.
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    account = models.ForeignKey(
        PointsAccount, on_delete=models.PROTECT, related_name="entries", db_index=False
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # Effect on the spendable balance and on pending points; a pending earn moves
    # only `pending_points`, its activation moves both.
    points = models.BigIntegerField()
    pending_points = models.BigIntegerField(default=0)
    balance_after = models.BigIntegerField()
    pending_after = models.BigIntegerField(default=0)
    occurred_at = models.DateTimeField(help_text="When the business event happened.")
    posted_at = models.DateTimeField(help_text="When the ledger recorded it.")
    source = models.CharField(max_length=10, choices=Source.choices)
    reference = models.CharField(max_length=120, blank=True, help_text="The caller's reference.")
    idempotency_key = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64, help_text="Hash of the request that made this entry.")
    reason = models.CharField(max_length=500)
    # actor and reverses are empty on most entries (every job's): partial indexes below.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    actor_label = models.CharField(
        max_length=120, help_text="Who or what caused it: a user, a job, an API key, an import."
    )
    reverses = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals", db_index=False
    )
    breakdown = models.JSONField(default=dict, blank=True)
    subject_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    subject_id = models.PositiveBigIntegerField(null=True, blank=True)
    subject = GenericForeignKey("subject_type", "subject_id")

    class Meta:
        verbose_name_plural = "ledger entries"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "idempotency_key"], name="entry_key_unique_per_program"
            ),
            models.CheckConstraint(
                name="entry_sign_matches_kind",
                condition=(
                    Q(kind__in=["earn", "bonus", "refund"], points__gte=0, pending_points__gte=0)
                    & ~Q(points=0, pending_points=0)
                )
                | Q(kind__in=["redeem", "expire"], points__lt=0, pending_points=0)
                | Q(kind="activate", points__gt=0, pending_points=-models.F("points"))
                | (Q(kind__in=["adjust", "reverse"]) & ~Q(points=0, pending_points=0)),
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="entry_reason_required"),
            models.CheckConstraint(condition=~Q(actor_label=""), name="entry_actor_required"),
        ]
        indexes = [
            models.Index(fields=["account", "-id"], name="entry_account_recent"),
            models.Index(fields=["account", "posted_at"], name="entry_account_posted"),
            models.Index(fields=["account", "occurred_at"], name="entry_account_occurred"),
            models.Index(fields=["program", "kind", "posted_at"], name="entry_program_kind_posted"),
            # Most entries (purchases, imports) have no subject: they are left out of its index.
            models.Index(
                fields=["subject_type", "subject_id"],
                name="entry_subject",
                condition=Q(subject_type__isnull=False),
            ),
            # The supervisor reports scan one program's entries by posted_at and read only these
            # columns: an index-only scan on PostgreSQL (SQLite ignores INCLUDE).
            models.Index(
                fields=["program", "posted_at"],
                include=["kind", "points", "pending_points", "account"],
                name="entry_program_posted_cover",
            ),
            models.Index(fields=["actor"], name="entry_by_actor", condition=Q(actor__isnull=False)),
            models.Index(fields=["reverses"], name="entry_reverses", condition=Q(reverses__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.points:+d} on account {self.account_id}"


class PointLot(models.Model):
    """The points of one credit, spent soonest-expiring first.

    Invariant: remaining == original - sum(allocations.points) - expired.
    Mutable, but only by the ledger and only under its account's row lock.
    """

    # No plain index on account: `lot_account_recent` below leads with it, and each index on
    # the table costs every lot the expiry job closes one more insert (its update is not HOT).
    account = models.ForeignKey(PointsAccount, on_delete=models.PROTECT, related_name="lots", db_index=False)
    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="lots")
    original = models.BigIntegerField()
    remaining = models.BigIntegerField()
    expired = models.BigIntegerField(default=0)
    pending = models.BooleanField(default=False)
    available_from = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    # Set by the expiry job on up to millions of lots at once, so kept cheap to write: no
    # database foreign key (its check at commit cost a quarter of an expiry run) and no index
    # (nothing looks lots up by it). The ledger is its only writer and `ledger.reconcile`
    # checks that it names an expiry entry of the lot's own account.
    expiry_entry = models.ForeignKey(
        LedgerEntry,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="expired_lots",
        db_constraint=False,
        db_index=False,
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(original__gt=0), name="lot_original_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0, remaining__lte=models.F("original")),
                name="lot_remaining_within_original",
            ),
            models.CheckConstraint(condition=Q(expired__gte=0), name="lot_expired_not_negative"),
            # An expired lot has nothing left, which is what makes expiry run once.
            models.CheckConstraint(
                condition=Q(expiry_entry__isnull=True) | Q(remaining=0), name="lot_expired_is_empty"
            ),
        ]
        indexes = [
            # Spending order inside one account, and the 30/60/90-day forecast.
            models.Index(
                fields=["account", "expires_at", "id"],
                name="lot_live_by_expiry",
                condition=Q(remaining__gt=0, pending=False),
            ),
            # The expiry and activation jobs' scans.
            models.Index(
                fields=["expires_at", "account"],
                name="lot_due_expiry",
                condition=Q(remaining__gt=0, pending=False, expires_at__isnull=False),
            ),
            models.Index(
                fields=["available_from", "account"],
                name="lot_due_activation",
                condition=Q(pending=True),
            ),
            # One member's upcoming pending points, and their used-up lots newest
            # first (explain): both independent of the size of the program.
            models.Index(
                fields=["account", "available_from"], name="lot_account_pending", condition=Q(pending=True)
            ),
            # An account's lots newest first: its closed ones (explain), the admin's search by
            # member. Not partial: a lot the expiry job closes goes into it either way (the job's
            # update is not HOT), and so it also serves reads that a plain account index did.
            models.Index(fields=["account", "-id"], name="lot_account_recent"),
        ]

    def __str__(self) -> str:
        return f"Lot {self.pk}: {self.remaining}/{self.original}"


class PointAllocation(ImmutableModel):
    """`points` taken from `lot` by `entry` (negative when points went back into the lot).

    A debit that found too few lots under an allow-debt policy is settled later by
    allocations from the next credit's lot, pointing at that same debit entry.
    """

    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="allocations")
    lot = models.ForeignKey(PointLot, on_delete=models.PROTECT, related_name="allocations")
    points = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(points=0), name="allocation_not_zero")]
        indexes = [models.Index(fields=["lot", "entry"], name="allocation_by_lot")]

    def __str__(self) -> str:
        return f"{self.points} from lot {self.lot_id} by entry {self.entry_id}"
