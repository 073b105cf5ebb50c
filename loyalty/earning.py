"""Turning activities into points: rules, tier boosts, promotions, caps, challenges, streaks, returns.

`activity_calculate` is the one calculation; `activity_preview` shows it with
nothing written and `activity_post` posts exactly what it shows, through the
ledger, under the member's account lock (so caps and budgets cannot be
overrun by concurrent postings). The external reference is the idempotency
key: the same event reported twice earns once, whichever channel reports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation

from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from loyalty import ledger, tiers
from loyalty.errors import ApplicationError
from loyalty.ledger import Actor, Posting
from loyalty.models import (
    PURCHASE,
    Challenge,
    EarningRule,
    LedgerEntry,
    Member,
    PointsShortfall,
    Program,
    Promotion,
    PromotionUsage,
    Streak,
)

Kind = LedgerEntry.Kind
ROUNDING = {
    EarningRule.Rounding.DOWN: ROUND_FLOOR,
    EarningRule.Rounding.NEAREST: ROUND_HALF_UP,
    EarningRule.Rounding.UP: ROUND_CEILING,
}


class UnknownActivity(ApplicationError):
    code = "unknown_activity"
    status = 400


class MemberNotActive(ApplicationError):
    code = "member_inactive"
    status = 409


class PurchaseNotFound(ApplicationError):
    code = "purchase_not_found"
    status = 404


@dataclass(frozen=True)
class PromotionLine:
    promotion_id: int
    name: str
    points: int


@dataclass(frozen=True)
class Calculation:
    """What an activity earns, part by part; `total` is what gets posted."""

    activity: str
    rule_id: int | None
    amount: str | None
    base: int = 0
    tier: str | None = None
    tier_boost: int = 0
    promotions: tuple[PromotionLine, ...] = ()
    capped: int = 0
    note: str = ""
    total: int = field(init=False)

    def __post_init__(self):
        gross = self.base + self.tier_boost + sum(line.points for line in self.promotions)
        object.__setattr__(self, "total", gross - self.capped)

    def as_breakdown(self) -> dict:
        data = asdict(self)
        data["promotions"] = [asdict(line) for line in self.promotions]
        return data


@dataclass(frozen=True)
class ActivityResult:
    calculation: Calculation
    posting: Posting | None
    bonuses: tuple[Posting, ...] = ()

    @property
    def points(self) -> int:
        return self.posting.entry.points + self.posting.entry.pending_points if self.posting else 0


# --- The calculation ----------------------------------------------------------


def _parse_amount(amount) -> Decimal | None:
    if amount is None or amount == "":
        return None
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ApplicationError("The amount must be a number.", field="amount") from None
    if not value.is_finite() or value <= 0 or value > Decimal("10000000"):
        raise ApplicationError("The amount must be above zero and at most 10,000,000.", field="amount")
    if value != value.quantize(Decimal("0.01")):
        raise ApplicationError("The amount may have at most two decimals.", field="amount")
    # One spelling per amount ("10.5", 10.50 and "1.05e1" are all "10.50"), so a retry matches.
    return value.quantize(Decimal("0.01"))


def _rule(program: Program, code: str, at: datetime) -> EarningRule:
    rule = (
        EarningRule.objects.filter(program=program, activity_code=code, is_active=True)
        .filter(Q(active_from__isnull=True) | Q(active_from__lte=at))
        .filter(Q(active_until__isnull=True) | Q(active_until__gt=at))
        .first()
    )
    if rule is None:
        raise UnknownActivity(
            f"Program {program.slug} has no active earning rule for {code!r}.", field="type"
        )
    return rule


def _earned_through(rule: EarningRule, member: Member, start: datetime, end: datetime) -> int:
    """Points already earned through `rule` by the member in [start, end) (net of nothing: gross earned)."""
    total = LedgerEntry.objects.filter(
        account__member=member,
        kind=Kind.EARN,
        breakdown__rule_id=rule.pk,
        occurred_at__gte=start,
        occurred_at__lt=end,
    ).aggregate(total=Sum(F("points") + F("pending_points")))["total"]
    return total or 0


def _local_day_and_month(program: Program, at: datetime) -> tuple[tuple, tuple]:
    local = timezone.localtime(at, program.tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_month = ledger.add_months(month, 1)
    return (day, day + timedelta(days=1)), (month, next_month)


def _promotions(member: Member, code: str, at: datetime):
    promotions = Promotion.objects.filter(
        program_id=member.program_id, is_active=True, starts_at__lte=at, ends_at__gt=at
    ).prefetch_related("tiers")
    for promotion in promotions.order_by("pk"):
        if promotion.activity_codes and code not in promotion.activity_codes:
            continue
        scoped = list(promotion.tiers.all())
        if scoped and member.tier_id not in {tier.pk for tier in scoped}:
            continue
        yield promotion


def _budget_left(promotion: Promotion, *, lock: bool) -> tuple[int | None, bool]:
    """Points left in the promotion's budget (None: unlimited) and whether a use is left."""
    if promotion.budget_points is None and promotion.max_uses is None:
        return None, True
    if lock:
        usage, _ = PromotionUsage.objects.get_or_create(promotion=promotion)
        usage = PromotionUsage.objects.select_for_update().get(pk=usage.pk)
    else:
        # A preview writes nothing: no usage row yet means nothing spent yet.
        usage = PromotionUsage.objects.filter(promotion=promotion).first() or PromotionUsage()
    points_left = (
        None if promotion.budget_points is None else max(promotion.budget_points - usage.points_awarded, 0)
    )
    uses_left = promotion.max_uses is None or usage.uses < promotion.max_uses
    return points_left, uses_left


def activity_calculate(
    *,
    member: Member,
    code: str,
    amount=None,
    occurred_at: datetime,
    lock: bool = False,
    rule: EarningRule | None = None,
) -> Calculation:
    """What the activity earns now. Reads only (with `lock`, promotion budgets are locked for posting).

    `rule` saves the lookup when the caller already has the activity's rule.
    """
    if member.status != Member.Status.ACTIVE:
        raise MemberNotActive(f"Member {member.membership_number} is {member.get_status_display().lower()}.")
    program = member.program
    rule = rule or _rule(program, code, occurred_at)
    value = _parse_amount(amount)
    if code == PURCHASE and value is None:
        raise ApplicationError("A purchase needs an amount.", field="amount")
    common = {"activity": code, "rule_id": rule.pk, "amount": None if value is None else str(value)}
    if rule.min_amount is not None and (value or 0) < rule.min_amount:
        return Calculation(**common, note=f"Below the minimum amount of {rule.min_amount}.")
    if rule.points_per_unit and value is not None:
        base = int((value * rule.points_per_unit).quantize(Decimal("1"), rounding=ROUNDING[rule.rounding]))
    else:
        base = rule.fixed_points
    tier = member.tier
    boost = int((Decimal(base) * (tier.multiplier - 1)).to_integral_value(ROUND_FLOOR)) if tier else 0
    lines = []
    for promotion in _promotions(member, code, occurred_at):
        if promotion.kind == Promotion.Kind.MULTIPLIER:
            points = int((Decimal(base) * (promotion.multiplier - 1)).to_integral_value(ROUND_FLOOR))
        else:
            points = promotion.bonus_points
        points_left, uses_left = _budget_left(promotion, lock=lock)
        if not uses_left:
            continue
        if points_left is not None:
            points = min(points, points_left)
        if points > 0:
            lines.append(PromotionLine(promotion.pk, promotion.name, points))
    gross = base + boost + sum(line.points for line in lines)
    capped, note = 0, ""
    (day, month) = _local_day_and_month(program, occurred_at)
    for cap, (start, end), label in (
        (rule.cap_per_day, day, "daily"),
        (rule.cap_per_month, month, "monthly"),
    ):
        if cap is None:
            continue
        room = max(cap - _earned_through(rule, member, start, end), 0)
        if gross - capped > room:
            capped = gross - room
            note = f"Limited by the {label} cap of {cap} points."
    return Calculation(
        **common,
        base=base,
        tier=tier.name if tier else None,
        tier_boost=boost,
        promotions=tuple(lines),
        capped=capped,
        note=note,
    )


def activity_preview(
    *, member: Member, code: str, amount=None, occurred_at: datetime | None = None
) -> Calculation:
    """'What would this earn?' The same calculation as posting, with nothing written."""
    return activity_calculate(
        member=member, code=code, amount=amount, occurred_at=occurred_at or timezone.now()
    )


# --- Posting ------------------------------------------------------------------


def _activity_key(code: str, reference: str) -> str:
    return f"activity:{code}:{reference}"


def _replay(program_id: int, key: str, request: dict) -> LedgerEntry | None:
    """The entry an earlier identical request made; a different request with the key is a conflict."""
    entry = LedgerEntry.objects.filter(program_id=program_id, idempotency_key=key).first()
    if entry is not None and entry.breakdown.get("request") != request:
        raise ledger.IdempotencyConflict(
            f"Reference {key.split(':', 2)[-1]!r} was already used for a different event.", field="reference"
        )
    return entry


def activity_post(
    *,
    member: Member,
    code: str,
    reference: str,
    source: str,
    actor: Actor,
    amount=None,
    occurred_at: datetime | None = None,
    now: datetime | None = None,
) -> ActivityResult:
    """Post an activity's points once per reference; returns what it earned, part by part.

    `now` is the posting clock (default: the real time), as in the ledger; the
    demo and tests use it to post history in the past.
    """
    if not reference or not reference.strip():
        raise ApplicationError("A reference for the event is required.", field="reference")
    # Only what the caller sent identifies the request: a defaulted time would
    # make every retry look like a different event. Amount and time are compared
    # by value, not by spelling: 10.5 and "10.50", or one moment in two time zones,
    # are the same event.
    value = _parse_amount(amount)
    request = {
        "member": member.membership_number,
        "code": code,
        "amount": None if value is None else str(value),
        "occurred_at": occurred_at.astimezone(UTC).isoformat() if occurred_at else None,
    }
    occurred_at = occurred_at or now or timezone.now()
    if occurred_at > (now or timezone.now()) + timedelta(minutes=5):
        raise ApplicationError("The event cannot be in the future.", field="occurred_at")
    key = _activity_key(code, reference.strip())
    with transaction.atomic():
        account = ledger.lock_accounts([member.account.pk])[member.account.pk]
        # The caller loaded the member before the lock; a posting that committed
        # meanwhile may have upgraded it (or an agent suspended it). Tier and status
        # are read again under the lock that upgrades and the review hold.
        member.refresh_from_db(fields=["status", "tier"])
        existing = _replay(member.program_id, key, request)
        if existing is not None:
            return ActivityResult(
                calculation=_calculation_of(existing), posting=Posting(existing, replayed=True)
            )
        rule = _rule(member.program, code, occurred_at)
        calc = activity_calculate(
            member=member, code=code, amount=amount, occurred_at=occurred_at, lock=True, rule=rule
        )
        if calc.total <= 0:
            return ActivityResult(calculation=calc, posting=None)
        posting = ledger.credit(
            account=account,
            points=calc.total,
            reason=f"{rule.name}" + (f" ({calc.amount} {member.program.currency})" if calc.amount else ""),
            actor=actor,
            idempotency_key=key,
            source=source,
            occurred_at=occurred_at,
            reference=reference.strip(),
            breakdown={**calc.as_breakdown(), "request": request},
            now=now,
            **_timing(rule, member.program, code, occurred_at),
        )
        for line in calc.promotions:
            _spend_budget(line)
        bonuses = _challenge_and_streak_bonuses(member, account, code, occurred_at, actor, source, now)
        tiers.tier_upgrade_check(member=member, actor_label=actor.label, now=occurred_at)
    return ActivityResult(calculation=calc, posting=posting, bonuses=bonuses)


def _calculation_of(entry: LedgerEntry) -> Calculation:
    data = {k: v for k, v in entry.breakdown.items() if k not in ("total", "request")}
    data["promotions"] = tuple(PromotionLine(**line) for line in data.get("promotions", ()))
    return Calculation(**data)


def _timing(rule: EarningRule, program: Program, code: str, occurred_at: datetime) -> dict:
    """The lot's waiting time and expiry: the rule's overrides, else the program's policy."""
    timing = {}
    wait = (
        rule.pending_days
        if rule.pending_days is not None
        else (program.pending_days if code == PURCHASE else 0)
    )
    timing["available_from"] = occurred_at + timedelta(days=wait)
    if rule.expiry_months:
        timing["expires_at"] = ledger.add_months(
            timezone.localtime(occurred_at, program.tz), rule.expiry_months
        )
    return timing


def _spend_budget(line: PromotionLine) -> None:
    PromotionUsage.objects.filter(promotion_id=line.promotion_id).update(
        points_awarded=F("points_awarded") + line.points, uses=F("uses") + 1
    )


def _challenge_and_streak_bonuses(member, account, code, at, actor, source, now) -> tuple[Posting, ...]:
    bonuses = []
    for challenge in Challenge.objects.filter(
        program_id=member.program_id, activity_code=code, is_active=True, starts_at__lte=at, ends_at__gt=at
    ):
        done = LedgerEntry.objects.filter(
            account=account,
            kind=Kind.EARN,
            breakdown__activity=code,
            occurred_at__gte=challenge.starts_at,
            occurred_at__lt=challenge.ends_at,
        ).count()
        if done >= challenge.required_count:
            bonuses.append(
                _bonus(
                    account,
                    challenge.bonus_points,
                    f"Challenge completed: {challenge.name}",
                    f"challenge:{challenge.pk}:{member.pk}",
                    actor,
                    source,
                    at,
                    now,
                )
            )
    for streak in Streak.objects.filter(program_id=member.program_id, activity_code=code, is_active=True):
        start = _streak_completed(streak, account, code, at, member.program)
        if start is not None:
            bonuses.append(
                _bonus(
                    account,
                    streak.bonus_points,
                    f"Streak completed: {streak.name}",
                    f"streak:{streak.pk}:{member.pk}:{start.isoformat()}",
                    actor,
                    source,
                    at,
                    now,
                )
            )
    return tuple(posting for posting in bonuses if posting is not None and not posting.replayed)


def _streak_completed(streak: Streak, account, code: str, at: datetime, program: Program):
    """The first period of a run that has just reached `length` consecutive periods, or None.

    A run pays once: it pays only when the period before the run had no activity,
    so a longer run does not pay again each day.
    """
    days = 1 if streak.period == Streak.Period.DAY else 7
    local = timezone.localtime(at, program.tz).date()
    current = local if days == 1 else local - timedelta(days=local.weekday())
    since = current - timedelta(days=days * streak.length)
    active = set()
    for moment in LedgerEntry.objects.filter(
        account=account,
        kind=Kind.EARN,
        breakdown__activity=code,
        occurred_at__gte=timezone.make_aware(datetime.combine(since, datetime.min.time()), program.tz),
        occurred_at__lte=at,
    ).values_list("occurred_at", flat=True):
        day = timezone.localtime(moment, program.tz).date()
        active.add(day if days == 1 else day - timedelta(days=day.weekday()))
    run = [current - timedelta(days=days * i) for i in range(streak.length)]
    if all(period in active for period in run) and since not in active:
        return run[-1]
    return None


def _bonus(account, points, reason, key, actor, source, at, now) -> Posting | None:
    """Pay a challenge or streak bonus once per key; None when it was already paid.

    Every later qualifying action finds the bonus due again, but at another time:
    posting the key again would be an idempotency conflict, not a replay.
    """
    if LedgerEntry.objects.filter(program_id=account.program_id, idempotency_key=key).exists():
        return None
    return ledger.credit(
        account=account,
        points=points,
        kind=Kind.BONUS,
        reason=reason,
        actor=actor,
        idempotency_key=key,
        source=source,
        occurred_at=at,
        now=now,
    )


# --- Returns ------------------------------------------------------------------


@dataclass(frozen=True)
class ReturnResult:
    points: int  # points taken back now
    shortfall: int  # points that could not be taken back (flagged for an agent)
    posting: Posting | None
    note: str = ""


def purchase_return(
    *,
    member: Member,
    original_reference: str,
    amount,
    reference: str,
    source: str,
    actor: Actor,
    now: datetime | None = None,
) -> ReturnResult:
    """Take back what a purchase earned (base, boosts, bonuses) in proportion to the amount returned.

    Returns add up: together they never take back more than the purchase earned,
    and the one that completes the purchase takes back exactly the rest. Points
    already spent: the program's negative-balance policy records a debt, or the
    shortfall is flagged for an agent.
    """
    value = _parse_amount(amount)
    if value is None:
        raise ApplicationError("A return needs the returned amount.", field="amount")
    if not reference or not reference.strip():
        raise ApplicationError("A reference for the return is required.", field="reference")
    reference = reference.strip()
    # Stripped as activity_post strips the purchase's reference, or a padded one is never found.
    original_reference = (original_reference or "").strip()
    key = f"return:{reference}"
    request = {
        "member": member.membership_number,
        "original_reference": original_reference,
        "amount": str(value),
    }
    with transaction.atomic():
        account = ledger.lock_accounts([member.account.pk])[member.account.pk]
        earn = LedgerEntry.objects.filter(
            program_id=member.program_id, idempotency_key=_activity_key(PURCHASE, original_reference)
        ).first()
        if earn is None or earn.account_id != account.pk:
            raise PurchaseNotFound(
                f"No purchase {original_reference!r} for this member.", field="original_reference"
            )
        existing = _replay(member.program_id, key, request)
        if existing is not None:
            return ReturnResult(
                points=-existing.points - existing.pending_points,
                shortfall=existing.breakdown.get("shortfall", 0),
                posting=Posting(existing, True),
            )
        flagged = PointsShortfall.objects.filter(program_id=member.program_id, reference=reference).first()
        if flagged is not None:
            return ReturnResult(points=0, shortfall=flagged.points, posting=None, note="Already flagged.")
        earned = earn.points + earn.pending_points
        purchase_amount = Decimal(earn.breakdown["amount"])
        reversals = list(earn.reversals.all())
        returned_before = sum(Decimal(r.breakdown.get("returned_amount", "0")) for r in reversals)
        taken_before = -sum(r.points + r.pending_points for r in reversals)
        taken_before += PointsShortfall.objects.filter(entry=earn).aggregate(s=Sum("points"))["s"] or 0
        returned = min(value, purchase_amount - returned_before)
        if returned <= 0:
            return ReturnResult(
                points=0, shortfall=0, posting=None, note="The whole purchase was already returned."
            )
        target = int(
            (earned * (returned_before + returned) / purchase_amount).quantize(Decimal("1"), ROUND_HALF_UP)
        )
        to_take = min(target, earned) - taken_before
        breakdown = {
            "request": request,
            "returned_amount": str(returned),
            "purchase_amount": str(purchase_amount),
        }
        if to_take <= 0:
            return ReturnResult(points=0, shortfall=0, posting=None, note="Nothing left to take back.")
        allow_debt = member.program.negative_balance_policy == Program.NegativeBalancePolicy.ALLOW_DEBT
        common = {
            "entry": earn,
            "reason": f"Purchase {original_reference} returned ({returned})",
            "actor": actor,
            "idempotency_key": key,
            "source": source,
            "allow_debt": allow_debt,
            "now": now,
        }
        try:
            posting = ledger.reverse(points=to_take, breakdown=breakdown, **common)
            return ReturnResult(points=to_take, shortfall=0, posting=posting)
        except ledger.InsufficientPoints as short:
            available = short.extra["available"]
        shortfall = to_take - available
        posting = None
        if available:
            posting = ledger.reverse(
                points=available, breakdown={**breakdown, "shortfall": shortfall}, **common
            )
        PointsShortfall.objects.create(
            program_id=member.program_id, member=member, entry=earn, points=shortfall, reference=reference
        )
    return ReturnResult(
        points=available,
        shortfall=shortfall,
        posting=posting,
        note=f"{shortfall} points were already spent; flagged for an agent.",
    )
