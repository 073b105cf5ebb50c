"""Reads for the agent's screens: plain functions over the ledger tables, no writes.

Every function here runs a fixed number of queries whatever the size of the
account (a member with 10 entries and one with 100,000 cost the same), so the
screens built on them stay fast.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import reduce
from operator import and_

from django.db.models import Count, F, Max, Prefetch, Q, QuerySet, Sum, Value, prefetch_related_objects
from django.db.models.functions import Coalesce, Replace
from django.utils import timezone

from loyalty.access import get_for_staff_or_404, scope_to_staff, staff_programs
from loyalty.models import (
    EarningRule,
    LedgerEntry,
    Member,
    PointAllocation,
    PointLot,
    PointsAccount,
    PointsShortfall,
    Redemption,
    Reward,
)

Kind = LedgerEntry.Kind

EXPIRY_WINDOWS = (30, 60, 90)

# --- Members -----------------------------------------------------------------


def member_list(*, user) -> QuerySet[Member]:
    """The members a staff user may see, with what the search table shows (one query per page)."""
    return scope_to_staff(Member.objects.select_related("program", "account"), user)


def member_get(*, user, number: str) -> Member:
    """One member by membership number, or a 404 outside the user's programs."""
    return get_for_staff_or_404(
        Member.objects.select_related("program", "account"), user, membership_number=number.strip()
    )


_PHONE_LIKE = re.compile(r"[\d\s()+.\-/]+")
# Characters people put in phone numbers; stripped on both sides before comparing.
_PHONE_PUNCTUATION = (" ", "-", ".", "(", ")", "+", "/")


def _digits_only(expression):
    """A SQL expression of `expression` with phone punctuation removed."""
    return reduce(lambda expr, char: Replace(expr, Value(char), Value("")), _PHONE_PUNCTUATION, expression)


def members_matching(queryset: QuerySet[Member], text: str) -> QuerySet[Member]:
    """Members whose number, name, email or phone match what an agent typed.

    The text is normalised first: surrounding and repeated spaces go, the match
    ignores case, and a phone-like query is compared digit for digit (so
    "06 12-34.56 78" finds "+33 6 12 34 56 78": a leading trunk zero is also
    tried without it, for numbers stored with their country code). Several
    words must each match a first name, last name or email ("ann smi" finds
    Ann Smith).
    """
    words = text.split()
    if not words:
        return queryset
    text = " ".join(words)
    condition = reduce(
        and_,
        (Q(first_name__icontains=w) | Q(last_name__icontains=w) | Q(email__icontains=w) for w in words),
    )
    condition |= Q(email__iexact=text)
    digits = re.sub(r"\D", "", text)
    if digits and _PHONE_LIKE.fullmatch(text):
        condition |= Q(membership_number__startswith=digits)
        if len(digits) >= 4:
            queryset = queryset.annotate(phone_digits=_digits_only(F("phone")))
            condition |= Q(phone_digits__contains=digits)
            if digits.startswith("0") and len(digits) > 4:
                condition |= Q(phone_digits__contains=digits[1:])
    return queryset.filter(condition)


# --- The member page -----------------------------------------------------------


@dataclass(frozen=True)
class PendingLot:
    points: int
    available_from: datetime
    earned_at: datetime
    reason: str


@dataclass(frozen=True)
class MemberOverview:
    """What the member page shows besides the account row itself."""

    expiring: dict[int, int]  # days ahead -> points expiring within them
    overdue: int  # points past their expiry date that the expiry job has not yet taken
    pending_lots: list[PendingLot]
    more_pending_lots: bool
    recent_entries: list[LedgerEntry]


def member_overview(
    *, account: PointsAccount, now: datetime | None = None, recent: int = 10, pending_limit: int = 5
) -> MemberOverview:
    """Expiry forecast, upcoming pending points and the latest entries: three bounded queries."""
    now = now or timezone.now()
    # One aggregate over live lots; the partial index on live lots serves it.
    sums = {
        f"within_{days}": Coalesce(
            Sum("remaining", filter=Q(expires_at__gt=now, expires_at__lte=now + timedelta(days=days))), 0
        )
        for days in EXPIRY_WINDOWS
    }
    sums["overdue"] = Coalesce(Sum("remaining", filter=Q(expires_at__lte=now)), 0)
    totals = PointLot.objects.filter(account=account, pending=False, remaining__gt=0).aggregate(**sums)
    pending = list(
        PointLot.objects.filter(account=account, pending=True)
        .select_related("entry")
        .order_by("available_from", "id")[: pending_limit + 1]
    )
    entries = list(LedgerEntry.objects.filter(account=account).order_by("-id")[:recent])
    return MemberOverview(
        expiring={days: totals[f"within_{days}"] for days in EXPIRY_WINDOWS},
        overdue=totals["overdue"],
        pending_lots=[
            PendingLot(
                points=lot.remaining,
                available_from=lot.available_from,
                earned_at=lot.entry.occurred_at,
                reason=lot.entry.reason,
            )
            for lot in pending[:pending_limit]
        ],
        more_pending_lots=len(pending) > pending_limit,
        recent_entries=entries,
    )


def ledger_entries(*, account: PointsAccount) -> QuerySet[LedgerEntry]:
    """Every entry of one account, newest first (the full ledger table filters and sorts it)."""
    return LedgerEntry.objects.filter(account=account).order_by("-id")


# --- Explain this balance -----------------------------------------------------


_MOVEMENT_WORDS = {
    "spent": "used",
    "returned": "given back",
    "settled_debt": "paid off an earlier negative balance",
    "taken_back": "taken back",
    "expired": "expired",
}


@dataclass(frozen=True)
class LotMovement:
    """One thing that happened to a lot after it was credited.

    `what` is one of: "spent" (a redemption or a downward correction took
    points), "returned" (a refund or reversal put points back), "settled_debt"
    (the points paid off an earlier negative balance), "taken_back" (a reversal
    of the credit itself) and "expired". `points` is always positive.
    """

    what: str
    points: int
    entry_id: int
    entry_kind: str
    entry_kind_display: str
    at: datetime
    reason: str
    reference: str

    @property
    def signed_points(self) -> int:
        return self.points if self.what == "returned" else -self.points

    @property
    def words(self) -> str:
        """What happened, in words an agent can read out."""
        return _MOVEMENT_WORDS[self.what]


@dataclass(frozen=True)
class LotExplanation:
    lot_id: int
    entry_id: int
    origin_kind: str
    origin_kind_display: str
    earned_at: datetime
    reason: str
    reference: str
    original: int
    remaining: int
    expired: int
    pending: bool
    available_from: datetime
    expires_at: datetime | None
    movements: list[LotMovement] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.pending:
            return "pending"
        if self.remaining > 0:
            return "available"
        return "expired" if self.expired else "used"


@dataclass(frozen=True)
class BalanceExplanation:
    """Where a balance comes from, lot by lot, with totals that add up to it.

    When the balance is zero or more, `available_total` (the remaining points of
    the live lots) equals it; a negative balance is a `debt` with no live lots.
    `pending_total` equals the account's pending points.
    """

    balance: int
    pending: int
    available_lots: list[LotExplanation]
    pending_lots: list[LotExplanation]
    closed_lots: list[LotExplanation]
    available_total: int
    pending_total: int
    live_lot_count: int
    live_lots_not_shown: int
    more_closed_lots: bool  # older closed lots exist beyond those shown
    overdue: int  # points past their expiry date not yet taken by the expiry job

    @property
    def debt(self) -> int:
        return max(-self.balance, 0)

    @property
    def adds_up(self) -> bool:
        return self.available_total == max(self.balance, 0) and self.pending_total == self.pending


def _movement(allocation: PointAllocation, lot: PointLot) -> LotMovement:
    entry = allocation.entry
    if allocation.points < 0:
        what = "returned"
    elif entry.points + entry.pending_points > 0:
        # A credit taking from a lot: points arriving on a negative balance paid the debt first.
        what = "settled_debt"
    elif entry.reverses_id == lot.entry_id:
        what = "taken_back"
    else:
        what = "spent"
    return LotMovement(
        what=what,
        points=abs(allocation.points),
        entry_id=entry.pk,
        entry_kind=entry.kind,
        entry_kind_display=entry.get_kind_display(),
        at=entry.posted_at,
        reason=entry.reason,
        reference=entry.reference,
    )


def _explain_lot(lot: PointLot) -> LotExplanation:
    movements = [_movement(allocation, lot) for allocation in lot.allocations.all()]
    if lot.expiry_entry is not None:
        movements.append(
            LotMovement(
                what="expired",
                points=lot.expired,
                entry_id=lot.expiry_entry.pk,
                entry_kind=lot.expiry_entry.kind,
                entry_kind_display=lot.expiry_entry.get_kind_display(),
                at=lot.expiry_entry.posted_at,
                reason=lot.expiry_entry.reason,
                reference=lot.expiry_entry.reference,
            )
        )
    movements.sort(key=lambda m: (m.at, m.entry_id))
    origin = lot.entry
    return LotExplanation(
        lot_id=lot.pk,
        entry_id=origin.pk,
        origin_kind=origin.kind,
        origin_kind_display=origin.get_kind_display(),
        earned_at=origin.occurred_at,
        reason=origin.reason,
        reference=origin.reference,
        original=lot.original,
        remaining=lot.remaining,
        expired=lot.expired,
        pending=lot.pending,
        available_from=lot.available_from,
        expires_at=lot.expires_at,
        movements=movements,
    )


def balance_explanation(
    *,
    account: PointsAccount,
    closed_limit: int = 20,
    live_limit: int = 200,
    now: datetime | None = None,
) -> BalanceExplanation:
    """Rebuild a balance for an agent: each live lot with what consumed it, the latest closed lots.

    At most six queries whatever the account's history: the totals, the live lots
    (pending last, then soonest-expiring first, up to `live_limit`), the
    `closed_limit` most recent closed lots (fully used or expired), and the
    entries and allocations of the lots shown. The totals come from the database, so they
    add up even when lots are cut off. Live lots are selected by exactly the
    conditions of the two partial lot indexes, so the work follows the number
    of live lots, not the length of the history.
    """
    now = now or timezone.now()
    live_lots = PointLot.objects.filter(account=account).filter(
        Q(pending=False, remaining__gt=0) | Q(pending=True, remaining__gt=0)
    )
    totals = live_lots.aggregate(
        available_points=Coalesce(Sum("remaining", filter=Q(pending=False)), 0),
        pending_points=Coalesce(Sum("remaining", filter=Q(pending=True)), 0),
        lot_count=Count("id"),
        overdue_points=Coalesce(Sum("remaining", filter=Q(pending=False, expires_at__lte=now)), 0),
    )
    live = list(
        live_lots.order_by("pending", F("expires_at").asc(nulls_last=True), "available_from", "id")[
            :live_limit
        ]
    )
    closed = list(PointLot.objects.filter(account=account, remaining=0).order_by("-id")[: closed_limit + 1])
    more_closed, closed = len(closed) > closed_limit, closed[:closed_limit]
    # The entries and allocations of the lots shown, never of the whole history: fetched by
    # id rather than joined, so the planner cannot pick a scan of the ledger table.
    prefetch_related_objects(
        [*live, *closed],
        "entry",
        "expiry_entry",
        Prefetch("allocations", queryset=PointAllocation.objects.select_related("entry").order_by("id")),
    )
    explained_live = [_explain_lot(lot) for lot in live]
    return BalanceExplanation(
        balance=account.balance,
        pending=account.pending,
        available_lots=[lot for lot in explained_live if not lot.pending],
        pending_lots=[lot for lot in explained_live if lot.pending],
        closed_lots=[_explain_lot(lot) for lot in closed],
        available_total=totals["available_points"],
        pending_total=totals["pending_points"],
        live_lot_count=totals["lot_count"],
        live_lots_not_shown=max(totals["lot_count"] - len(live), 0),
        more_closed_lots=more_closed,
        overdue=totals["overdue_points"],
    )


# --- Balance on a date ----------------------------------------------------------


def end_of_local_day(day: date, tz) -> datetime:
    """The last microsecond of `day` in the time zone `tz` (DST-safe: next midnight minus 1 µs)."""
    next_midnight = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return next_midnight - timedelta(microseconds=1)


def local_day_bounds(day: date, tz) -> tuple[datetime, datetime]:
    """The [start, end) of `day` in the time zone `tz`."""
    start = datetime.combine(day, time.min, tzinfo=tz)
    return start, datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)


def entries_posted_between(
    *, account: PointsAccount, start: datetime, end: datetime, limit: int = 100
) -> list[LedgerEntry]:
    """Entries posted in [start, end), oldest first, at most `limit` + 1 (to tell there are more)."""
    return list(
        LedgerEntry.objects.filter(account=account, posted_at__gte=start, posted_at__lt=end).order_by(
            "posted_at", "id"
        )[: limit + 1]
    )


# --- History --------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    field: str
    label: str
    old: object
    new: object


@dataclass(frozen=True)
class HistoryRow:
    record: object
    changes: list[FieldChange]

    @property
    def who(self) -> str:
        user = self.record.history_user
        return user.get_username() if user is not None else "system"


HISTORY_EXCLUDED_FIELDS = ("created_at",)


def history_rows(
    records: list, *, older=None, excluded: tuple[str, ...] = HISTORY_EXCLUDED_FIELDS
) -> list[HistoryRow]:
    """Each historical record (newest first) with its field changes against the one before it.

    `records` is one page of history newest first; `older` is the record just
    before the oldest of them (or None), so no query is made per row. `excluded`
    fields are left out of the changes (timestamps that move on every save).
    """
    rows = []
    following = [*records[1:], older]
    for record, previous in zip(records, following, strict=True):
        changes = []
        if previous is not None and record.history_type != "-":
            delta = record.diff_against(previous, excluded_fields=excluded)
            for change in delta.changes:
                model_field = record.instance_type._meta.get_field(change.field)
                # Choices read as their labels ("Active", not "active").
                labels = dict(model_field.flatchoices) if model_field.choices else {}
                changes.append(
                    FieldChange(
                        field=change.field,
                        label=model_field.verbose_name,
                        old=labels.get(change.old, change.old),
                        new=labels.get(change.new, change.new),
                    )
                )
        rows.append(HistoryRow(record=record, changes=changes))
    return rows


# --- Queues across programs ------------------------------------------------------


@dataclass(frozen=True)
class StaffScope:
    """What a list across a staff user's programs needs to know about them."""

    programs: int
    time_zone: zoneinfo.ZoneInfo | None  # shared by all their programs; None: they differ


def staff_scope(*, user) -> StaffScope:
    """How many programs the user works on, and their common time zone if they share one (one query)."""
    found = staff_programs(user).aggregate(
        programs=Count("id"), zones=Count("time_zone", distinct=True), zone=Max("time_zone")
    )
    zone = zoneinfo.ZoneInfo(found["zone"]) if found["zones"] == 1 else None
    return StaffScope(programs=found["programs"], time_zone=zone)


# --- Redemptions ------------------------------------------------------------------


OPEN_REDEMPTION_STATUSES = (Redemption.Status.REQUESTED, Redemption.Status.APPROVED)


def redemption_list(*, user) -> QuerySet[Redemption]:
    """The redemptions of a staff user's programs, oldest first (a queue), with what the table shows."""
    queryset = Redemption.objects.select_related("program", "member", "reward").order_by("created_at", "id")
    return scope_to_staff(queryset, user)


def redemption_get(*, user, pk: int) -> Redemption:
    """One redemption with its member, account, reward and entries, or a 404 outside the user's programs."""
    queryset = Redemption.objects.select_related(
        "program",
        "member__account",
        "member__tier",
        "reward__min_tier",
        "requested_by",
        "debit_entry",
        "refund_entry",
    )
    return get_for_staff_or_404(queryset, user, pk=pk)


REDEMPTION_HISTORY_EXCLUDED = (*HISTORY_EXCLUDED_FIELDS, "updated_at")


def redemption_history(*, redemption: Redemption, limit: int = 50) -> tuple[list[HistoryRow], bool]:
    """Who did what to a redemption, newest first, with the changes; and whether older records were cut."""
    records = list(
        redemption.history.select_related("history_user").order_by("-history_date", "-history_id")[
            : limit + 1
        ]
    )
    older = records[limit] if len(records) > limit else None
    rows = history_rows(records[:limit], older=older, excluded=REDEMPTION_HISTORY_EXCLUDED)
    return rows, older is not None


@dataclass(frozen=True)
class RewardOption:
    """A reward an agent may redeem for a member, and what stands in the way, if anything."""

    reward: Reward
    affordable: bool
    in_stock: bool
    tier_ok: bool

    @property
    def blocked_by(self) -> str:
        """Why the request would be refused now ("" when it would go through)."""
        if not self.tier_ok:
            return f"Needs the {self.reward.min_tier.name} tier"
        if not self.in_stock:
            return "Out of stock"
        if not self.affordable:
            return "Not enough points"
        return ""


def redeemable_rewards(*, member: Member, now: datetime | None = None) -> QuerySet[Reward]:
    """The rewards of the member's program that are on offer now, cheapest first."""
    now = now or timezone.now()
    return (
        Reward.objects.filter(program_id=member.program_id, is_active=True)
        .filter(Q(active_from__isnull=True) | Q(active_from__lte=now))
        .filter(Q(active_until__isnull=True) | Q(active_until__gt=now))
        .select_related("min_tier")
        .order_by("cost_points", "name", "id")
    )


def reward_options(*, member: Member, balance: int, now: datetime | None = None) -> list[RewardOption]:
    """The catalogue as the redeem form shows it: each reward with whether this member can have it."""
    tier = member.tier
    options = []
    for reward in redeemable_rewards(member=member, now=now):
        needed = reward.min_tier
        options.append(
            RewardOption(
                reward=reward,
                affordable=balance >= reward.cost_points,
                in_stock=reward.stock is None or reward.stock > 0,
                tier_ok=needed is None or (tier is not None and tier.rank >= needed.rank),
            )
        )
    return options


# --- Shortfalls -------------------------------------------------------------------


def shortfall_list(*, user) -> QuerySet[PointsShortfall]:
    """Shortfalls of a staff user's programs: open ones first, then oldest first."""
    queryset = PointsShortfall.objects.select_related("program", "member", "entry").order_by(
        "status", "created_at", "id"
    )
    return scope_to_staff(queryset, user)


def shortfall_get(*, user, pk: int) -> PointsShortfall:
    queryset = PointsShortfall.objects.select_related("program", "member__account", "entry")
    return get_for_staff_or_404(queryset, user, pk=pk)


def shortfall_history(*, shortfall: PointsShortfall, limit: int = 50) -> list[HistoryRow]:
    records = list(
        shortfall.history.select_related("history_user").order_by("-history_date", "-history_id")[: limit + 1]
    )
    return history_rows(records[:limit], older=records[limit] if len(records) > limit else None)


def open_shortfall_count(*, member: Member) -> int:
    return PointsShortfall.objects.filter(member=member, status=PointsShortfall.Status.OPEN).count()


# --- Earn preview -----------------------------------------------------------------


def earning_activities(*, program) -> list[tuple[str, str]]:
    """(code, name) of the program's active earning rules, for the preview's activity choice."""
    rules = EarningRule.objects.filter(program=program, is_active=True).order_by("name", "activity_code")
    return list(rules.values_list("activity_code", "name"))
