"""Turning activities into points: rules, tier boosts, promotions, caps, challenges, streaks, returns.

`activity_calculate` is the one calculation; `activity_preview` shows it with
nothing written and `activity_post` posts exactly what it shows, through the
ledger, under the member's account lock (so caps and budgets cannot be
overrun by concurrent postings). The external reference is the idempotency
key: the same event reported twice earns once, whichever channel reports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import BooleanField, Count, Exists, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from loyalty import ledger, signals, tiers
from loyalty.errors import ApplicationError
from loyalty.ledger import Actor, Posting
from loyalty.models import (
    PURCHASE,
    Challenge,
    EarningRule,
    LedgerEntry,
    Member,
    PointsAccount,
    PointsShortfall,
    Program,
    Promotion,
    PromotionUsage,
    PurchaseReturn,
    Streak,
    Tier,
    UnpaidActivity,
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
    # Promotions with a budget or a use cap, whose usage posting must charge; not part of the breakdown.
    budgeted: frozenset[int] = field(default=frozenset(), compare=False, repr=False)
    total: int = field(init=False)

    def __post_init__(self):
        gross = self.base + self.tier_boost + sum(line.points for line in self.promotions)
        object.__setattr__(self, "total", gross - self.capped)

    def as_breakdown(self) -> dict:
        # The fields hold plain values and PromotionLines: no need for asdict's deep copy.
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "budgeted"}
        data["promotions"] = [asdict(line) for line in self.promotions]
        return data

    def promotion_awards(self) -> list[tuple[PromotionLine, int]]:
        """Each promotion line with the points it actually awarded once the cap is applied.

        A cap cuts from the top: the promotions first, the last one applied first,
        then the tier boost and the base. A promotion is a bonus on top of what the
        rule earns, so points the cap refused were never the promotion's to give,
        and its budget is charged only with what the member got.
        """
        cut, awards = self.capped, []
        for line in reversed(self.promotions):
            taken = min(cut, line.points)
            cut -= taken
            awards.append((line, line.points - taken))
        return list(reversed(awards))


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


def _rules_for(program_id: int, code: str) -> list[EarningRule]:
    """The program's active rules for `code`, whatever their window, in the order `_rule` picks."""
    return list(
        EarningRule.objects.filter(program_id=program_id, activity_code=code, is_active=True).order_by("pk")
    )


def _rule(program: Program, code: str, at: datetime, rules: list[EarningRule] | None = None) -> EarningRule:
    """The rule for `code` in force at `at`, from `rules` (`_rules_for`) when the caller has them."""
    rules = _rules_for(program.pk, code) if rules is None else rules
    rule = next(
        (
            rule
            for rule in rules
            if (rule.active_from is None or rule.active_from <= at)
            and (rule.active_until is None or rule.active_until > at)
        ),
        None,
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


def _running_promotions(program_id: int, tier_id: int | None, first: datetime, last: datetime):
    """The active promotions for members of the tier running at some moment of [first, last], in one query.

    A promotion with no tiers is for everyone; one with tiers, for members at one of them
    (a (promotion, tier) pair is unique, so the join yields each promotion once).
    """
    for_tier = Q(tiers__isnull=True)
    if tier_id is not None:
        for_tier |= Q(tiers=tier_id)
    return list(
        Promotion.objects.filter(
            for_tier, program_id=program_id, is_active=True, starts_at__lte=last, ends_at__gt=first
        ).order_by("pk")
    )


def _promotions(member: Member, code: str, at: datetime, running: list[Promotion] | None = None):
    """The running promotions that apply to the member's activity and tier at `at`.

    `running` (`_running_promotions` over a span holding `at`) saves the query.
    """
    if running is None:
        running = _running_promotions(member.program_id, member.tier_id, at, at)
    for promotion in running:
        if not promotion.starts_at <= at < promotion.ends_at:
            continue
        if promotion.activity_codes and code not in promotion.activity_codes:
            continue
        yield promotion


def _is_budgeted(promotion: Promotion) -> bool:
    return promotion.budget_points is not None or promotion.max_uses is not None


def _usage(promotion: Promotion, *, lock: bool) -> PromotionUsage:
    """What the promotion has spent; with `lock`, its row created if need be and locked for posting."""
    if lock:
        usage, _ = PromotionUsage.objects.get_or_create(promotion=promotion)
        return PromotionUsage.objects.select_for_update().get(pk=usage.pk)
    # A preview writes nothing: no usage row yet means nothing spent yet.
    return PromotionUsage.objects.filter(promotion=promotion).first() or PromotionUsage()


def _budget_left(
    promotion: Promotion, *, lock: bool, usage: PromotionUsage | None = None
) -> tuple[int | None, bool]:
    """Points left in the promotion's budget (None: unlimited) and whether a use is left.

    `usage` is the promotion's usage when the caller holds it (locked) already.
    """
    if not _is_budgeted(promotion):
        return None, True
    usage = usage or _usage(promotion, lock=lock)
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
    reads: _ChunkReads | None = None,
) -> Calculation:
    """What the activity earns now. Reads only (with `lock`, promotion budgets are locked for posting).

    `rule` saves the lookup when the caller already has the activity's rule; `reads`
    answers the lookups from what a chunk of postings loaded once (`activities_post`).
    """
    if member.status != Member.Status.ACTIVE:
        raise MemberNotActive(f"Member {member.membership_number} is {member.get_status_display().lower()}.")
    program = member.program
    rule = rule or (reads.rule(code, occurred_at) if reads else _rule(program, code, occurred_at))
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
    lines, budgeted = [], set()
    running = reads.promotions(member) if reads else None
    for promotion in _promotions(member, code, occurred_at, running):
        if _is_budgeted(promotion):
            budgeted.add(promotion.pk)
        if promotion.kind == Promotion.Kind.MULTIPLIER:
            points = int((Decimal(base) * (promotion.multiplier - 1)).to_integral_value(ROUND_FLOOR))
        else:
            points = promotion.bonus_points
        usage = reads.usage(promotion) if reads and _is_budgeted(promotion) else None
        points_left, uses_left = _budget_left(promotion, lock=lock, usage=usage)
        if not uses_left:
            continue
        if points_left is not None:
            points = min(points, points_left)
        if points > 0:
            lines.append(PromotionLine(promotion.pk, promotion.name, points))
    gross = base + boost + sum(line.points for line in lines)
    capped, note = 0, ""
    if rule.cap_per_day is not None or rule.cap_per_month is not None:
        (day, month) = _local_day_and_month(program, occurred_at)
        for cap, (start, end), label in (
            (rule.cap_per_day, day, "daily"),
            (rule.cap_per_month, month, "monthly"),
        ):
            if cap is None:
                continue
            earned = (reads.earned_through if reads else _earned_through)(rule, member, start, end)
            room = max(cap - earned, 0)
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
        budgeted=frozenset(budgeted),
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


def _earlier_events(program_id: int, keys) -> dict[str, tuple[int, dict, bool]]:
    """The keys among `keys` posted before: key -> (pk, breakdown, whether it is an entry or an
    unpaid record). One statement over both tables."""
    # No ORDER BY in the parts of a UNION (SQLite refuses it): .order_by() drops the models' ordering.
    keys = list(keys)
    paid = (
        LedgerEntry.objects.filter(program_id=program_id, idempotency_key__any=keys)
        .order_by()
        .values_list("idempotency_key", "pk", "breakdown", Value(True, output_field=BooleanField()))
    )
    unpaid = (
        UnpaidActivity.objects.filter(program_id=program_id, idempotency_key__any=keys)
        .order_by()
        .values_list("idempotency_key", "pk", "breakdown", Value(False, output_field=BooleanField()))
    )
    return {key: (pk, breakdown, is_entry) for key, pk, breakdown, is_entry in paid.union(unpaid, all=True)}


def _earlier_event(program_id: int, key: str, request: dict) -> LedgerEntry | UnpaidActivity | None:
    """What an earlier identical activity made (its entry, or its record when it earned nothing).

    One statement over both tables, since every new posting asks. The same
    reference with a different request is a conflict.
    """
    row = _earlier_events(program_id, [key]).get(key)
    if row is None:
        return None
    pk, breakdown, is_entry = row
    if (breakdown or {}).get("request") != request:
        raise ledger.IdempotencyConflict(
            f"Reference {key.split(':', 2)[-1]!r} was already used for a different event.", field="reference"
        )
    return LedgerEntry.objects.get(pk=pk) if is_entry else UnpaidActivity.objects.get(pk=pk)


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
    value, request, occurred_at, key = _activity_request(member, code, reference, amount, occurred_at, now)
    with transaction.atomic():
        account = ledger.lock_accounts([member.account.pk])[member.account.pk]
        # The caller loaded the member before the lock; a posting that committed
        # meanwhile may have upgraded it (or an agent suspended it). Tier and status
        # are read again under the lock that upgrades and the review hold, in their own
        # statement (see `ledger.lock_accounts`), the tier with them.
        fresh = Member.objects.select_related("tier").only("status", "tier").get(pk=member.pk)
        member.status, member.tier = fresh.status, fresh.tier
        existing = _earlier_event(member.program_id, key, request)
        if existing is not None:
            posting = Posting(existing, replayed=True) if isinstance(existing, LedgerEntry) else None
            return ActivityResult(calculation=_calculation_of(existing), posting=posting)
        rule = _rule(member.program, code, occurred_at)
        calc = activity_calculate(
            member=member, code=code, amount=amount, occurred_at=occurred_at, lock=True, rule=rule
        )
        if calc.total <= 0:
            _record_unpaid(member, key, code, reference.strip(), occurred_at, calc, request, now)
            result = ActivityResult(calculation=calc, posting=None)
            _announce(result, member, code, value, occurred_at, reference, source, actor)
            return result
        posting = ledger.credit(
            account=account,
            points=calc.total,
            actor=actor,
            now=now,
            **_earn_fields(rule, member, calc, key, reference, occurred_at, request, source),
        )
        for line, awarded in calc.promotion_awards():
            if line.promotion_id in calc.budgeted:
                _spend_budget(line, awarded)
        bonuses = _challenge_and_streak_bonuses(member, account, code, occurred_at, actor, source, now)
        tiers.tier_upgrade_check(member=member, actor_label=actor.label, now=occurred_at)
        result = ActivityResult(calculation=calc, posting=posting, bonuses=bonuses)
        _announce(result, member, code, value, occurred_at, reference, source, actor)
    return result


def _activity_request(member, code, reference, amount, occurred_at, now) -> tuple:
    """Check an activity's request; returns (amount, request, occurred_at, idempotency key)."""
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
    return value, request, occurred_at, _activity_key(code, reference.strip())


def _earn_fields(rule, member, calc, key, reference, occurred_at, request, source) -> dict:
    """The ledger credit of an activity that earned `calc.total`, less the account and points."""
    return {
        "reason": f"{rule.name}" + (f" ({calc.amount} {member.program.currency})" if calc.amount else ""),
        "idempotency_key": key,
        "source": source,
        "occurred_at": occurred_at,
        "reference": reference.strip(),
        "breakdown": {**calc.as_breakdown(), "request": request},
        **_timing(rule, member.program, calc.activity, occurred_at),
    }


def _announce(result, member, code, amount, occurred_at, reference, source, actor, run=None) -> None:
    signals.activity_posted.send(
        run=run,
        sender=ActivityResult,
        member=member,
        code=code,
        amount=amount,
        occurred_at=occurred_at,
        reference=reference.strip(),
        source=source,
        actor=actor,
        result=result,
    )


def _record_unpaid(member, key, code, reference, occurred_at, calc, request, now) -> None:
    """Keep the reference of an event that earned nothing (see `UnpaidActivity`)."""
    try:
        with transaction.atomic():
            _unpaid(member, key, code, reference, occurred_at, calc, request, now).save()
    except IntegrityError:
        # Another member's event took the reference meanwhile (one member's are serialised
        # by the account lock, so this is never a replay).
        raise ledger.IdempotencyConflict(
            f"Reference {reference!r} was already used for a different event.", field="reference"
        ) from None


def _unpaid(member, key, code, reference, occurred_at, calc, request, now) -> UnpaidActivity:
    return UnpaidActivity(
        program_id=member.program_id,
        member=member,
        idempotency_key=key,
        activity_code=code,
        reference=reference,
        occurred_at=occurred_at,
        breakdown={**calc.as_breakdown(), "request": request},
        created_at=now or timezone.now(),
    )


def _calculation_of(entry: LedgerEntry | UnpaidActivity) -> Calculation:
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


def _spend_budget(line: PromotionLine, awarded: int, reads: _ChunkReads | None = None) -> None:
    """Charge the promotion with what it awarded; a line the cap cut to nothing was not a use.

    With `reads`, the charge is kept with the chunk's usage and written when the chunk is.
    """
    if awarded <= 0:
        return
    if reads:
        reads.spend(line.promotion_id, awarded)
    else:
        _charge_budget(line.promotion_id, awarded, 1)


def _charge_budget(promotion_id: int, points: int, uses: int) -> None:
    PromotionUsage.objects.filter(promotion_id=promotion_id).update(
        points_awarded=F("points_awarded") + points, uses=F("uses") + uses
    )


def _counted(account, code: str):
    """The member's earns of `code` that count as qualifying actions for challenges and streaks.

    A purchase returned in full no longer counts (its last return is marked
    `completes_purchase`); a partly returned one still does.
    """
    return _counted_where(Q(account=account), code)


def _counted_where(where: Q, code: str):
    """`_counted` for the accounts `where` picks."""
    completed = PurchaseReturn.objects.filter(purchase=OuterRef("pk"), completes_purchase=True)
    return LedgerEntry.objects.filter(where, kind=Kind.EARN, breakdown__activity=code).filter(
        ~Exists(completed)
    )


def _challenge_key(challenge: Challenge, member: Member) -> str:
    return f"challenge:{challenge.pk}:{member.pk}"


def _streak_key(streak: Streak, member: Member, start: date) -> str:
    return f"streak:{streak.pk}:{member.pk}:{start.isoformat()}"


def _running_challenges_and_streaks(program_id: int, code: str, at: datetime):
    """The active challenges and streaks for `code`: one statement when there are none (the usual case)."""
    challenges = Challenge.objects.filter(
        program_id=program_id, activity_code=code, is_active=True, starts_at__lte=at, ends_at__gt=at
    )
    streaks = Streak.objects.filter(program_id=program_id, activity_code=code, is_active=True)
    found = list(
        challenges.order_by()
        .values_list("pk", Value(True, output_field=BooleanField()))
        .union(streaks.order_by().values_list("pk", Value(False, output_field=BooleanField())), all=True)
    )
    if not found:
        return [], []
    return (
        list(challenges.filter(pk__in=[pk for pk, is_challenge in found if is_challenge])),
        list(streaks.filter(pk__in=[pk for pk, is_challenge in found if not is_challenge])),
    )


def _challenge_and_streak_bonuses(member, account, code, at, actor, source, now) -> tuple[Posting, ...]:
    bonuses = []
    challenges, streaks = _running_challenges_and_streaks(member.program_id, code, at)
    for challenge in challenges:
        done = (
            _counted(account, code)
            .filter(occurred_at__gte=challenge.starts_at, occurred_at__lt=challenge.ends_at)
            .count()
        )
        if done >= challenge.required_count:
            bonuses.append(
                _bonus(
                    account,
                    challenge.bonus_points,
                    f"Challenge completed: {challenge.name}",
                    _challenge_key(challenge, member),
                    actor,
                    source,
                    at,
                    now,
                )
            )
    for streak in streaks:
        start = _streak_completed(streak, account, code, at, member.program)
        if start is not None:
            bonuses.append(
                _bonus(
                    account,
                    streak.bonus_points,
                    f"Streak completed: {streak.name}",
                    _streak_key(streak, member, start),
                    actor,
                    source,
                    at,
                    now,
                )
            )
    return tuple(posting for posting in bonuses if posting is not None and not posting.replayed)


def _periods(streak: Streak, account, code: str, since: date, until: datetime, program: Program) -> set[date]:
    """The local days (or Mondays of the weeks) from `since` to `until` with a counted action."""
    days = 1 if streak.period == Streak.Period.DAY else 7
    active = set()
    for moment in (
        _counted(account, code)
        .filter(
            occurred_at__gte=timezone.make_aware(datetime.combine(since, datetime.min.time()), program.tz),
            occurred_at__lte=until,
        )
        .values_list("occurred_at", flat=True)
    ):
        day = timezone.localtime(moment, program.tz).date()
        active.add(day if days == 1 else day - timedelta(days=day.weekday()))
    return active


def _streak_completed(streak: Streak, account, code: str, at: datetime, program: Program):
    """The first period of a run that has just reached `length` consecutive periods, or None.

    A run pays once: it pays only when the period before the run had no activity,
    so a longer run does not pay again each day.
    """
    days = 1 if streak.period == Streak.Period.DAY else 7
    local = timezone.localtime(at, program.tz).date()
    current = local if days == 1 else local - timedelta(days=local.weekday())
    since = current - timedelta(days=days * streak.length)
    active = _periods(streak, account, code, since, at, program)
    run = [current - timedelta(days=days * i) for i in range(streak.length)]
    if all(period in active for period in run) and since not in active:
        return run[-1]
    return None


def _bonuses_paid(account, key: str):
    """Bonus entries paid under `key` (a bonus paid again after being withdrawn is `key#2`, ...),
    each with `standing`: the points not yet reversed or flagged as a shortfall."""
    return _bonus_entries(
        Q(account=account) & (Q(idempotency_key=key) | Q(idempotency_key__startswith=f"{key}#"))
    )


def _bonus_entries(where: Q):
    """The bonus entries `where` picks, each with `standing` (see `_bonuses_paid`), in order."""
    reversed_ = (
        LedgerEntry.objects.filter(reverses=OuterRef("pk"))
        .order_by()
        .values("reverses")
        .annotate(total=Sum(F("points") + F("pending_points")))
        .values("total")
    )
    flagged = (
        PointsShortfall.objects.filter(entry=OuterRef("pk"))
        .order_by()
        .values("entry")
        .annotate(total=Sum("points"))
        .values("total")
    )
    return (
        LedgerEntry.objects.filter(where, kind=Kind.BONUS)
        .annotate(
            standing=F("points")
            + F("pending_points")
            + Coalesce(Subquery(reversed_), 0)
            - Coalesce(Subquery(flagged), 0)
        )
        .order_by("pk")
    )


def _bonus(account, points, reason, key, actor, source, at, now) -> Posting | None:
    """Pay a challenge or streak bonus unless one is standing for `key`; None when it is.

    Every later qualifying action finds the bonus due again, but at another time:
    posting the key again would be an idempotency conflict, not a replay. A bonus
    withdrawn by a return (`_withdraw_bonuses`) no longer stands, so completing the
    challenge again pays it again, under the next key.
    """
    paid = list(_bonuses_paid(account, key))
    if any(bonus.standing > 0 for bonus in paid):
        return None
    return ledger.credit(
        account=account,
        points=points,
        kind=Kind.BONUS,
        reason=reason,
        actor=actor,
        idempotency_key=f"{key}#{len(paid) + 1}" if paid else key,
        source=source,
        occurred_at=at,
        now=now,
    )


def _withdraw_bonuses(*, member, account, earn, return_reference, actor, source, now) -> list[Posting]:
    """Take back the challenge and streak bonuses that no longer hold once `earn` stopped counting.

    A challenge's bonus stands while its window still holds `required_count`
    counted actions; a streak's while every period of its run still has one. A
    withdrawal is a reversal keyed by the bonus, so it happens once; points the
    member already spent are a debt or a flagged shortfall, as for the return.
    """
    code, at = earn.breakdown.get("activity"), earn.occurred_at
    program = member.program
    undone = []
    for challenge in Challenge.objects.filter(
        program_id=member.program_id, activity_code=code, starts_at__lte=at, ends_at__gt=at
    ):
        standing = [b for b in _bonuses_paid(account, _challenge_key(challenge, member)) if b.standing > 0]
        if not standing:
            continue
        done = (
            _counted(account, code)
            .filter(occurred_at__gte=challenge.starts_at, occurred_at__lt=challenge.ends_at)
            .count()
        )
        if done < challenge.required_count:
            undone += standing
    local = timezone.localtime(at, program.tz).date()
    for streak in Streak.objects.filter(program_id=member.program_id, activity_code=code):
        days = 1 if streak.period == Streak.Period.DAY else 7
        period = local if days == 1 else local - timedelta(days=local.weekday())
        prefix = f"streak:{streak.pk}:{member.pk}:"
        for bonus in LedgerEntry.objects.filter(
            account=account, kind=Kind.BONUS, idempotency_key__startswith=prefix
        ).values_list("idempotency_key", flat=True):
            start = date.fromisoformat(bonus[len(prefix) :].split("#")[0])
            run = [start + timedelta(days=days * i) for i in range(streak.length)]
            if period not in run:
                continue
            key = _streak_key(streak, member, start)
            standing = [b for b in _bonuses_paid(account, key) if b.standing > 0]
            if not standing:
                continue
            until = timezone.make_aware(datetime.combine(run[-1], datetime.max.time()), program.tz)
            active = _periods(streak, account, code, start, until, program)
            if not all(p in active for p in run):
                undone += [b for b in standing if b not in undone]
    postings = []
    for bonus in undone:
        points = min(bonus.standing, ledger.reversible_points(entry=bonus))
        if points <= 0:
            continue  # its points expired: nothing left to take
        key = f"withdraw:{bonus.idempotency_key}"
        posting, _, _ = _take_back(
            member=member,
            entry=bonus,
            points=points,
            key=key,
            reason=f"Bonus withdrawn, purchase returned ({return_reference}): {bonus.reason}",
            breakdown={"withdrawn": bonus.idempotency_key, "return": return_reference},
            actor=actor,
            source=source,
            now=now,
            flag_reference=key,
        )
        if posting is not None:
            postings.append(posting)
    return postings


def _take_back(
    *, member, entry, points, key, reason, breakdown, actor, source, now, flag_reference
) -> tuple[Posting | None, int, int]:
    """Reverse `points` of `entry`; what the member no longer has is a debt where the program
    allows it, else taken as far as it goes and the rest flagged for an agent.

    Returns the posting (None when nothing could be taken), the points taken and those flagged.
    """
    allow_debt = member.program.negative_balance_policy == Program.NegativeBalancePolicy.ALLOW_DEBT
    common = {
        "entry": entry,
        "reason": reason,
        "actor": actor,
        "idempotency_key": key,
        "source": source,
        "allow_debt": allow_debt,
        "now": now,
    }
    try:
        return ledger.reverse(points=points, breakdown=breakdown, **common), points, 0
    except ledger.InsufficientPoints as short:
        available = short.extra["available"]
    shortfall = points - available
    posting = None
    if available:
        posting = ledger.reverse(points=available, breakdown={**breakdown, "shortfall": shortfall}, **common)
    PointsShortfall.objects.create(
        program_id=member.program_id, member=member, entry=entry, points=shortfall, reference=flag_reference
    )
    return posting, available, shortfall


# --- Posting many ---------------------------------------------------------------


@dataclass(frozen=True)
class Activity:
    """One event for `activities_post`: what `activity_post` takes per event."""

    member: Member
    code: str
    reference: str
    amount: Any = None
    occurred_at: datetime | None = None


def activities_post(
    *, activities: list[Activity], source: str, actor: Actor, now: datetime | None = None
) -> list[ActivityResult | ApplicationError]:
    """Post many activities of one program, in order, exactly as `activity_post` one by one would.

    Returns each activity's result, or the ApplicationError that refused it (a
    refused activity writes nothing; the others land). The same calculation,
    idempotency and ledger code run, but the writes of a run of plain earnings
    are made set-based: the chunk's accounts are locked once (in id order), the
    lookups are made once (`_ChunkReads`), entries, lots and unpaid records are
    inserted in bulk and the balances updated in one statement; `activity_posted`
    is sent for each activity, in order, once its points are written.

    An activity whose posting does more than earn (a replay or a conflict, a
    refusal, a possible tier upgrade, a challenge or streak that may complete, a
    member a receiver of `activity_batch_members` wants one by one) is posted by
    `activity_post` itself, after what came before it is written. Anything
    unexpected while writing (a key taken meanwhile by another channel, a
    receiver refusing) undoes the set-based work and posts every activity one by one.
    """
    if not activities:
        return []
    if len({activity.member.program_id for activity in activities}) == 1:
        try:
            with transaction.atomic():
                return _Batch(activities, source=source, actor=actor, now=now).run()
        except (IntegrityError, _OneByOne):
            pass
    return [_post_or_refusal(activity, source=source, actor=actor, now=now) for activity in activities]


class _OneByOne(Exception):
    """The chunk cannot be posted set-based after all; it is posted one activity at a time."""


def _post_or_refusal(activity: Activity, *, source, actor, now) -> ActivityResult | ApplicationError:
    try:
        return activity_post(
            member=activity.member,
            code=activity.code,
            reference=activity.reference,
            amount=activity.amount,
            occurred_at=activity.occurred_at,
            source=source,
            actor=actor,
            now=now,
        )
    except ApplicationError as error:
        return error


class _ChunkReads:
    """The lookups of `activity_calculate`, made once for a chunk of postings to one program and
    kept up to date in memory as the chunk's postings are planned.

    Rules per activity code; promotions per tier, running at some moment of the chunk's span
    [first, last] (each activity then keeps those running at its own moment); promotion usage,
    locked at first use; for capped rules, the earnings of the chunk's accounts in the
    calendar months the chunk covers, so each cap window is summed in memory.
    """

    def __init__(self, program: Program, account_ids: list[int], first: datetime, last: datetime):
        self.program = program
        self.account_ids = account_ids
        self.first, self.last = first, last
        self._rules: dict[str, list[EarningRule]] = {}
        self._promotions: dict[int | None, list[Promotion]] = {}
        self._usage: dict[int, PromotionUsage] = {}
        self._spent: dict[int, list[int]] = {}
        self._earned: dict[int, dict[int, list[tuple[datetime, int]]]] = {}

    def rule(self, code: str, at: datetime) -> EarningRule:
        if code not in self._rules:
            self._rules[code] = _rules_for(self.program.pk, code)
        return _rule(self.program, code, at, self._rules[code])

    def promotions(self, member: Member) -> list[Promotion]:
        if member.tier_id not in self._promotions:
            self._promotions[member.tier_id] = _running_promotions(
                self.program.pk, member.tier_id, self.first, self.last
            )
        return self._promotions[member.tier_id]

    def usage(self, promotion: Promotion) -> PromotionUsage:
        if promotion.pk not in self._usage:
            self._usage[promotion.pk] = _usage(promotion, lock=True)
        return self._usage[promotion.pk]

    def spend(self, promotion_id: int, points: int) -> None:
        usage = self._usage[promotion_id]
        usage.points_awarded += points
        usage.uses += 1
        spent = self._spent.setdefault(promotion_id, [0, 0])
        spent[0] += points
        spent[1] += 1

    def forget_usage(self) -> None:
        """Usage is read again (still locked) at next use: something else charged it."""
        self._usage.clear()

    def save_usage(self) -> None:
        for promotion_id, (points, uses) in self._spent.items():
            _charge_budget(promotion_id, points, uses)
        self._spent.clear()

    def earned_through(self, rule: EarningRule, member: Member, start: datetime, end: datetime) -> int:
        """`_earned_through`, from memory: [start, end) lies within the months loaded."""
        if rule.pk not in self._earned:
            since = _local_day_and_month(self.program, self.first)[1][0]
            until = _local_day_and_month(self.program, self.last)[1][1]
            earned: dict[int, list[tuple[datetime, int]]] = {}
            for account_id, at, points in LedgerEntry.objects.filter(
                account_id__in=self.account_ids,
                kind=Kind.EARN,
                breakdown__rule_id=rule.pk,
                occurred_at__gte=since,
                occurred_at__lt=until,
            ).values_list("account_id", "occurred_at", F("points") + F("pending_points")):
                earned.setdefault(account_id, []).append((at, points))
            self._earned[rule.pk] = earned
        return sum(
            points for at, points in self._earned[rule.pk].get(member.account.pk, ()) if start <= at < end
        )

    def earn(self, rule_id: int, account_id: int, at: datetime, points: int) -> None:
        """A planned earning counts towards the caps of the activities after it."""
        if rule_id in self._earned:
            self._earned[rule_id].setdefault(account_id, []).append((at, points))


@dataclass
class _Planned:
    index: int
    activity: Activity
    calculation: Calculation
    amount: Decimal | None
    occurred_at: datetime
    credit: ledger.Credit | None = None
    unpaid: UnpaidActivity | None = None


class _Batch:
    def __init__(self, activities: list[Activity], *, source: str, actor: Actor, now: datetime | None):
        self.activities = activities
        self.source, self.actor, self.now = source, actor, now
        self.program = activities[0].member.program
        self.members: dict[int, list[Member]] = {}
        for activity in activities:
            self.members.setdefault(activity.member.pk, [])
            if all(member is not activity.member for member in self.members[activity.member.pk]):
                self.members[activity.member.pk].append(activity.member)
        moments = [activity.occurred_at for activity in activities if activity.occurred_at is not None]
        self.first, self.last = (min(moments), max(moments)) if moments else (None, None)
        self.planned: list[_Planned] = []
        self.results: list[ActivityResult | ApplicationError | None] = [None] * len(activities)

    def run(self) -> list[ActivityResult | ApplicationError]:
        self._load()
        for index, activity in enumerate(self.activities):
            planned = self._plan(index, activity)
            if planned is None:
                self._write()
                result = _post_or_refusal(activity, source=self.source, actor=self.actor, now=self.now)
                self.results[index] = result
                self._after_one(activity, result)
            else:
                self.planned.append(planned)
        self._write()
        return self.results

    def _load(self) -> None:
        """Lock the chunk's accounts and read, once, what the calculations of its activities need."""
        account_ids = [members[0].account.pk for members in self.members.values()]
        self.accounts = ledger.lock_accounts(account_ids)
        # As activity_post does after its lock: status and tier read again, in their own statement.
        for fresh in (
            Member.objects.select_related("tier").only("status", "tier").filter(pk__any=self.members)
        ):
            for member in self.members[fresh.pk]:
                member.status, member.tier = fresh.status, fresh.tier
        keys = [
            _activity_key(activity.code, activity.reference.strip())
            for activity in self.activities
            if activity.reference and activity.reference.strip()
        ]
        self.earlier = _earlier_events(self.program.pk, keys)
        self.keys: set[str] = set()
        self.reads = _ChunkReads(self.program, account_ids, self.first, self.last)
        self.tiers = list(Tier.objects.filter(program_id=self.program.pk))
        self.qualifying: dict[int, int] | None = None
        self.gained: dict[int, int] = {}
        self.challenges = list(Challenge.objects.filter(program_id=self.program.pk, is_active=True))
        self.streaks = list(Streak.objects.filter(program_id=self.program.pk, is_active=True))
        # Per challenge, loaded at first use: counted earns per account, members whose bonus stands.
        self.challenge_counts: dict[int, tuple[dict[int, int], set[int]]] = {}
        members = [members[0] for members in self.members.values()]
        self.one_by_one = set()
        for _, answer in signals.activity_batch_members.send(sender=Activity, members=members):
            self.one_by_one |= set(answer or ())

    def _after_one(self, activity: Activity, result: ActivityResult | ApplicationError) -> None:
        """Bring what was loaded up to date after `activity_post` posted one activity itself.

        A refusal or a replay wrote nothing. A posting moved its own account (its earning
        counts towards caps and tiers, its bonuses towards tiers) and perhaps promotion
        budgets; if anything else moved (a receiver credited another account), everything
        is loaded again.
        """
        member = activity.member
        if activity.reference and activity.reference.strip():
            self.keys.add(_activity_key(activity.code, activity.reference.strip()))
        if isinstance(result, ApplicationError) or (result.posting is not None and result.posting.replayed):
            return
        for other in self.members[member.pk]:
            other.status, other.tier = member.status, member.tier
        own = member.account.pk
        columns = ("balance", "pending", "lifetime_earned", "lifetime_redeemed", "lifetime_expired")
        moved = False
        # The chunk's ids as one array (`__any`): a thousand placeholders cost more than the read.
        for account_id, *totals in PointsAccount.objects.filter(pk__any=list(self.accounts)).values_list(
            "id", *columns
        ):
            account = self.accounts[account_id]
            if account_id != own and any(
                getattr(account, name) != value for name, value in zip(columns, totals, strict=True)
            ):
                moved = True
            for name, value in zip(columns, totals, strict=True):
                setattr(account, name, value)
        if moved:
            self._load()
            return
        self.reads.forget_usage()  # the posting may have charged budgets
        if result.posting is not None:
            entry = result.posting.entry
            self.reads.earn(
                entry.breakdown["rule_id"], own, entry.occurred_at, entry.points + entry.pending_points
            )
            self._count_for_challenges(own, activity.code, entry.occurred_at)
            for bonus in result.bonuses:
                key = bonus.entry.idempotency_key.split("#")[0].split(":")
                if key[0] == "challenge" and int(key[1]) in self.challenge_counts:
                    self.challenge_counts[int(key[1])][1].add(int(key[2]))
            if self.qualifying is not None:  # else it is read from the database, with these
                gained = entry.points + entry.pending_points
                gained += sum(bonus.entry.points + bonus.entry.pending_points for bonus in result.bonuses)
                self.gained[own] = self.gained.get(own, 0) + gained

    def _plan(self, index: int, activity: Activity) -> _Planned | None:
        """The activity's writes when they are plain (an earning or an unpaid record); None when
        `activity_post` must post it, for it may do more, or refuse it."""
        member = activity.member
        if member.pk in self.one_by_one or activity.occurred_at is None:
            return None
        try:
            value, request, occurred_at, key = _activity_request(
                member, activity.code, activity.reference, activity.amount, activity.occurred_at, self.now
            )
        except ApplicationError:
            return None
        account = self.accounts.get(member.account.pk)
        if account is None or key in self.earlier or key in self.keys:
            return None
        try:
            rule = self.reads.rule(activity.code, occurred_at)
            calc = activity_calculate(
                member=member,
                code=activity.code,
                amount=activity.amount,
                occurred_at=occurred_at,
                lock=True,
                rule=rule,
                reads=self.reads,
            )
        except ApplicationError:
            return None
        planned = _Planned(index, activity, calc, value, occurred_at)
        reference = activity.reference.strip()
        if calc.total <= 0:
            planned.unpaid = _unpaid(
                member, key, activity.code, reference, occurred_at, calc, request, self.now
            )
        else:
            if self._bonus_may_be_due(member, account, activity.code, occurred_at) or self._tier_may_rise(
                member, account, calc.total, occurred_at
            ):
                return None
            self._count_for_challenges(account.pk, activity.code, occurred_at)
            planned.credit = ledger.Credit(
                account_id=account.pk,
                points=calc.total,
                **_earn_fields(
                    rule, member, calc, key, activity.reference, occurred_at, request, self.source
                ),
            )
            for line, awarded in calc.promotion_awards():
                if line.promotion_id in calc.budgeted:
                    _spend_budget(line, awarded, self.reads)
            self.reads.earn(rule.pk, account.pk, occurred_at, calc.total)
            self.gained[account.pk] = self.gained.get(account.pk, 0) + calc.total
        self.keys.add(key)
        return planned

    def _bonus_may_be_due(self, member: Member, account, code: str, at: datetime) -> bool:
        """Whether earning now could pay a bonus (`_challenge_and_streak_bonuses`): any streak of
        the activity; a challenge running at `at` whose bonus does not stand for the member and
        that this earning would bring to its count."""
        if any(streak.activity_code == code for streak in self.streaks):
            return True
        for challenge in self._running_challenges(code, at):
            counts, standing = self._challenge_counts(challenge)
            if member.pk not in standing and counts.get(account.pk, 0) + 1 >= challenge.required_count:
                return True
        return False

    def _running_challenges(self, code: str, at: datetime) -> list[Challenge]:
        return [c for c in self.challenges if c.activity_code == code and c.starts_at <= at < c.ends_at]

    def _challenge_counts(self, challenge: Challenge) -> tuple[dict[int, int], set[int]]:
        """The challenge's counted earns per account of the chunk and the members whose bonus for
        it stands, read once: at the first earning that could count for it, before which nothing
        planned does (`_count_for_challenges` adds each one after)."""
        if challenge.pk not in self.challenge_counts:
            window = {"occurred_at__gte": challenge.starts_at, "occurred_at__lt": challenge.ends_at}
            counts = dict(
                _counted_where(Q(account_id__in=list(self.accounts)), challenge.activity_code)
                .filter(**window)
                .order_by()
                .values("account_id")
                .annotate(n=Count("id"))
                .values_list("account_id", "n")
            )
            prefix = f"challenge:{challenge.pk}:"
            paid = _bonus_entries(Q(account_id__in=list(self.accounts), idempotency_key__startswith=prefix))
            standing = {
                int(bonus.idempotency_key.removeprefix(prefix).split("#")[0])
                for bonus in paid
                if bonus.standing > 0
            }
            self.challenge_counts[challenge.pk] = (counts, standing)
        return self.challenge_counts[challenge.pk]

    def _count_for_challenges(self, account_id: int, code: str, at: datetime) -> None:
        """An earning planned or posted counts towards the loaded challenges it falls in."""
        for challenge in self._running_challenges(code, at):
            if challenge.pk in self.challenge_counts:
                counts = self.challenge_counts[challenge.pk][0]
                counts[account_id] = counts.get(account_id, 0) + 1

    def _tier_may_rise(self, member: Member, account, points: int, at: datetime) -> bool:
        """Whether `tiers.tier_upgrade_check` could upgrade the member after this earning.

        An upper bound of the qualifying points: every earn and bonus of the account since the
        window of the chunk's earliest activity opened, ignoring the reversals that would
        lower it, plus what the chunk earned so far. Below every higher threshold, no upgrade.
        """
        rank = next((tier.rank for tier in self.tiers if tier.pk == member.tier_id), 0)
        higher = [tier.threshold for tier in self.tiers if tier.rank > rank]
        if not higher:
            return False
        if self.qualifying is None:
            since = tiers.window_start(program=self.program, at=min(self.first, at))
            self.qualifying = dict(
                LedgerEntry.objects.filter(
                    account_id__in=self.accounts, kind__in=[Kind.EARN, Kind.BONUS], occurred_at__gt=since
                )
                .order_by()
                .values("account_id")
                .annotate(total=Sum(F("points") + F("pending_points")))
                .values_list("account_id", "total")
            )
            # From now on `gained` holds what the database does not: the planned, unwritten earnings.
            self.gained = {}
            for p in self.planned:
                if p.credit is not None:
                    self.gained[p.credit.account_id] = (
                        self.gained.get(p.credit.account_id, 0) + p.credit.points
                    )
        bound = self.qualifying.get(account.pk, 0) + self.gained.get(account.pk, 0) + points
        return bound >= min(higher)

    def _write(self) -> None:
        """Write what was planned, in order, then tell the receivers, activity by activity."""
        if not self.planned:
            return
        planned, self.planned = self.planned, []
        try:
            credits = [p.credit for p in planned if p.credit is not None]
            postings = iter(
                ledger.credit_many(accounts=self.accounts, credits=credits, actor=self.actor, now=self.now)
            )
            UnpaidActivity.objects.bulk_create([p.unpaid for p in planned if p.unpaid is not None])
            self.reads.save_usage()
            run = signals.PostingRun()
            for p in planned:
                activity = p.activity
                result = ActivityResult(
                    calculation=p.calculation, posting=next(postings) if p.credit is not None else None
                )
                _announce(
                    result,
                    activity.member,
                    activity.code,
                    p.amount,
                    p.occurred_at,
                    activity.reference,
                    self.source,
                    self.actor,
                    run,
                )
                self.results[p.index] = result
            run.close()
        except ApplicationError as error:
            # activity_post would refuse that one activity alone: only one by one can.
            raise _OneByOne from error


# --- Returns ------------------------------------------------------------------

NOTHING_EARNED = "Nothing to take back: the purchase earned no points."


@dataclass(frozen=True)
class ReturnResult:
    points: int  # points taken back now
    shortfall: int  # points that could not be taken back (flagged for an agent)
    posting: Posting | None
    note: str = ""
    expired: int = 0  # points not taken back because they had expired (already gone)
    withdrawn: tuple[Posting, ...] = ()  # challenge and streak bonuses taken back with it
    replayed: bool = False


def _return_replay(earlier: PurchaseReturn, request: dict) -> ReturnResult:
    # Returns recorded before requests were kept have none: the reference alone decides.
    if earlier.request and earlier.request != request:
        raise ledger.IdempotencyConflict(
            f"Return reference {earlier.reference!r} was already used for a different return.",
            field="reference",
        )
    return ReturnResult(
        points=earlier.points,
        shortfall=earlier.shortfall,
        posting=Posting(earlier.entry, replayed=True) if earlier.entry_id else None,
        note=earlier.note,
        expired=earlier.expired,
        replayed=True,
    )


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
    shortfall is flagged for an agent. Points of the purchase that expired are not
    taken (they already left the balance; see `ledger.reverse`).

    Every accepted return is recorded once by its reference (`PurchaseReturn`):
    the same request again is a replay, another request with that reference a
    conflict. A purchase returned in full stops counting for challenges and
    streaks, and the bonuses it completed that no longer hold are withdrawn.
    A purchase that earned nothing answers "nothing to take back"; an unknown one
    is `PurchaseNotFound`.
    """
    value = _parse_amount(amount)
    if value is None:
        raise ApplicationError("A return needs the returned amount.", field="amount")
    if not reference or not reference.strip():
        raise ApplicationError("A reference for the return is required.", field="reference")
    reference = reference.strip()
    # Stripped as activity_post strips the purchase's reference, or a padded one is never found.
    original_reference = (original_reference or "").strip()
    purchase_key = _activity_key(PURCHASE, original_reference)
    request = {
        "member": member.membership_number,
        "original_reference": original_reference,
        "amount": str(value),
    }
    with transaction.atomic():
        account = ledger.lock_accounts([member.account.pk])[member.account.pk]
        earn = LedgerEntry.objects.filter(program_id=member.program_id, idempotency_key=purchase_key).first()
        if earn is None or earn.account_id != account.pk:
            unpaid = UnpaidActivity.objects.filter(
                program_id=member.program_id, idempotency_key=purchase_key, member=member
            )
            if earn is None and unpaid.exists():
                return ReturnResult(points=0, shortfall=0, posting=None, note=NOTHING_EARNED)
            raise PurchaseNotFound(
                f"No purchase {original_reference!r} for this member.", field="original_reference"
            )
        earlier = (
            PurchaseReturn.objects.select_related("entry")
            .filter(program_id=member.program_id, reference=reference)
            .first()
        )
        if earlier is not None:
            return _return_replay(earlier, request)
        earned = earn.points + earn.pending_points
        purchase_amount = Decimal(earn.breakdown["amount"])
        returned_before = PurchaseReturn.objects.filter(purchase=earn).aggregate(
            total=Sum("returned_amount")
        )["total"] or Decimal("0")
        reversed_before = earn.reversals.aggregate(total=Sum(F("points") + F("pending_points")))["total"] or 0
        flagged_before = (
            PointsShortfall.objects.filter(entry=earn).aggregate(total=Sum("points"))["total"] or 0
        )
        taken_before = -reversed_before + flagged_before
        returned = max(min(value, purchase_amount - returned_before), Decimal("0"))
        record = {
            "program_id": member.program_id,
            "member": member,
            "purchase": earn,
            "reference": reference,
            "returned_amount": returned,
            "completes_purchase": returned > 0 and returned_before + returned == purchase_amount,
            "request": request,
            "created_at": now or timezone.now(),
        }
        if returned <= 0:
            note = "The whole purchase was already returned."
            _record_return(record, note=note)
            return ReturnResult(points=0, shortfall=0, posting=None, note=note)
        target = int(
            (earned * (returned_before + returned) / purchase_amount).quantize(Decimal("1"), ROUND_HALF_UP)
        )
        due = min(target, earned) - taken_before
        to_take = min(due, ledger.reversible_points(entry=earn))
        expired = max(due, 0) - max(to_take, 0)
        posting, taken, shortfall = None, 0, 0
        if to_take > 0:
            breakdown = {
                "request": request,
                "returned_amount": str(returned),
                "purchase_amount": str(purchase_amount),
            }
            if expired:
                breakdown["expired"] = expired
            posting, taken, shortfall = _take_back(
                member=member,
                entry=earn,
                points=to_take,
                key=f"return:{reference}",
                reason=f"Purchase {original_reference} returned ({returned})",
                breakdown=breakdown,
                actor=actor,
                source=source,
                now=now,
                flag_reference=reference,
            )
        notes = []
        if shortfall:
            notes.append(f"{shortfall} points were already spent; flagged for an agent.")
        if expired:
            notes.append(f"{expired} points of this purchase had expired; nothing to take back for them.")
        if not (taken or shortfall or expired):
            notes.append("Nothing left to take back.")
        note = " ".join(notes)
        _record_return(
            record,
            note=note,
            points=taken,
            shortfall=shortfall,
            expired=expired,
            entry=posting.entry if posting else None,
        )
        withdrawn = ()
        if record["completes_purchase"]:
            withdrawn = tuple(
                _withdraw_bonuses(
                    member=member,
                    account=account,
                    earn=earn,
                    return_reference=reference,
                    actor=actor,
                    source=source,
                    now=now,
                )
            )
    return ReturnResult(
        points=taken, shortfall=shortfall, posting=posting, note=note, expired=expired, withdrawn=withdrawn
    )


def _record_return(record: dict, **fields) -> PurchaseReturn:
    try:
        with transaction.atomic():
            return PurchaseReturn.objects.create(**record, **fields)
    except IntegrityError:
        # Another member's return took the reference meanwhile (one member's returns are
        # serialised by the account lock, so this is never a replay of the same request).
        raise ledger.IdempotencyConflict(
            f"Return reference {record['reference']!r} was already used for a different return.",
            field="reference",
        ) from None
