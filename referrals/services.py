"""Writes of the referrals app: codes, clicks, attribution, qualification, rewards and review.

A referral's life:

    pending --(qualifying purchase, score below threshold)--> rewarded
    pending --(qualifying purchase, score at/over threshold)--> held --> rewarded | rejected
    pending --(qualifying purchase, the ledger refused the rewards)--> qualified --> rewarded | rejected
    pending --(an agent rejects it)--> rejected

Rewards are two ledger credits (the referrer's points and the referee's welcome
bonus), each with an idempotency key derived from the referral's id and a
reason that depends only on the referral, so posting them again (a replayed
purchase, a second click on "approve", a retry after a crash) returns the
entries already made instead of paying twice. Every status change locks the
referral row first.
"""

from __future__ import annotations

import logging
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from loyalty import ledger, notifications
from loyalty.errors import ApplicationError
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, Member, Program
from referrals.fraud import fraud_findings
from referrals.models import (
    DeviceSighting,
    Referral,
    ReferralClick,
    ReferralCode,
    ReferralPolicy,
    ReferralSignal,
)

logger = logging.getLogger(__name__)

Status = Referral.Status
Source = LedgerEntry.Source

# The long-lived browser cookie that ties a click, a sign-up and a member's own visits together.
# The portal sign-up reads it into request_meta["device_id"].
DEVICE_COOKIE = "ref_device"
DEVICE_COOKIE_MAX_AGE = 2 * 365 * 24 * 3600

# No 0/O, 1/I/L: a code read out over the phone or copied from a screenshot stays unambiguous.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_PREFIX_LENGTH = 5
CODE_SUFFIX_LENGTH = 4
AUTO_ACTOR = Actor(label="job:referral_qualification")
REASON_LENGTH = Referral._meta.get_field("decision_reason").max_length


class ReferralCodeInvalid(ApplicationError):
    code = "invalid_referral_code"
    status = 400


class AlreadyReferred(ApplicationError):
    code = "already_referred"
    status = 409


class IllegalTransition(ApplicationError):
    code = "illegal_transition"
    status = 409


@dataclass(frozen=True)
class ReviewResult:
    referral: Referral
    replayed: bool = False


# --- Policy and codes --------------------------------------------------------------


def active_policy(*, program_id: int) -> ReferralPolicy | None:
    return ReferralPolicy.objects.filter(program_id=program_id, is_active=True).first()


def _code_prefix(member: Member) -> str:
    # Letters of the first name, accents stripped, ambiguous letters left out: "ALICE", "ZOE".
    ascii_name = unicodedata.normalize("NFKD", member.first_name).encode("ascii", "ignore").decode()
    letters = [c for c in ascii_name.upper() if c in CODE_ALPHABET]
    return "".join(letters[:CODE_PREFIX_LENGTH]) or "REF"


def _new_code(member: Member, rng=secrets) -> str:
    return _code_prefix(member) + "".join(rng.choice(CODE_ALPHABET) for _ in range(CODE_SUFFIX_LENGTH))


def code_for_member(*, member: Member) -> ReferralCode:
    """The member's share code, made on first use (one per member; a clash with another code retries)."""
    existing = ReferralCode.objects.filter(member=member).first()
    if existing is not None:
        return existing
    for _ in range(10):
        try:
            with transaction.atomic():
                return ReferralCode.objects.create(
                    program_id=member.program_id, member=member, code=_new_code(member)
                )
        except IntegrityError:
            # Either the random code was taken or a concurrent request made this member's code.
            existing = ReferralCode.objects.filter(member=member).first()
            if existing is not None:
                return existing
    raise ApplicationError("Could not make a unique referral code; try again.", code="code_exhausted")


def normalise_code(code: str) -> str:
    return "".join((code or "").split()).upper()


def _usable_code(code: str, *, program_id: int | None = None, lock: bool = False) -> ReferralCode:
    """The active code `code` of an active member in a program with an active policy, or a field error."""
    queryset = ReferralCode.objects.select_related("member", "program")
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    found = queryset.filter(code=normalise_code(code)).first()
    if found is None or not found.is_active or found.member.status != Member.Status.ACTIVE:
        raise ReferralCodeInvalid("This referral code is not valid.", field="referral_code")
    if program_id is not None and found.program_id != program_id:
        raise ReferralCodeInvalid("This referral code belongs to another program.", field="referral_code")
    if active_policy(program_id=found.program_id) is None:
        raise ReferralCodeInvalid("This program has no referral scheme at the moment.", field="referral_code")
    return found


# --- Clicks and sightings ----------------------------------------------------------


def click_record(
    *, code: str, ip: str | None, user_agent: str, device_id: str, now: datetime | None = None
) -> ReferralClick:
    """Log a visit to a share link. An unknown or switched-off code is an error (the view answers 404)."""
    found = _usable_code(code)
    return ReferralClick.objects.create(
        program_id=found.program_id,
        code=found,
        clicked_at=now or timezone.now(),
        ip=ip or None,
        user_agent=(user_agent or "")[:300],
        device_id=(device_id or "")[:64],
    )


def sighting_record(
    *, member: Member, device_id: str, ip: str | None, context: str, now: datetime | None = None
) -> None:
    """Remember a member's browser and address (once a day each), for the shared-device and IP signals."""
    if not device_id and not ip:
        return
    now = now or timezone.now()
    DeviceSighting.objects.bulk_create(
        [
            DeviceSighting(
                member=member,
                device_id=(device_id or "")[:64],
                ip=ip or None,
                seen_on=timezone.localtime(now, member.program.tz).date(),
                seen_at=now,
                context=context,
            )
        ],
        ignore_conflicts=True,
    )


# --- Attribution -------------------------------------------------------------------


def referral_attribute(
    *,
    referee: Member,
    code: str,
    channel: str,
    request_meta: dict | None = None,
    user=None,
    reason: str = "",
    now: datetime | None = None,
) -> Referral:
    """Record that `referee` joined through `code`. Raises a field error for a bad code or a second referral.

    Called at sign-up (through loyalty.signals.member_joined) and by an agent
    attributing by hand with a reason. A member is referred once: the unique
    referee column makes the first valid referral win even under a race.
    """
    meta = request_meta or {}
    now = now or timezone.now()
    found = _usable_code(code, program_id=referee.program_id)
    if found.member_id == referee.pk:
        raise ReferralCodeInvalid("A member cannot use their own referral code.", field="referral_code")
    device_id = (meta.get("device_id") or "")[:64]
    click = None
    if device_id:
        click = (
            ReferralClick.objects.filter(code=found, device_id=device_id)
            .order_by("-clicked_at", "-id")
            .first()
        )
    manual = channel == Referral.Channel.AGENT
    referral = Referral(
        program_id=referee.program_id,
        referrer=found.member,
        referee=referee,
        code=found,
        channel=channel,
        # Attributed later by an agent: the window still counts from the day the member joined.
        signed_up_at=referee.created_at if manual and referee.created_at else now,
        signup_ip=meta.get("ip") or None,
        signup_user_agent=(meta.get("user_agent") or "")[:300],
        signup_device_id=device_id,
        click=click,
        attributed_by=user,
        attribution_reason=reason[:500],
        created_at=now,
        updated_at=now,
    )
    try:
        with transaction.atomic():
            referral.save()
    except IntegrityError as error:
        if Referral.objects.filter(referee=referee).exists():
            raise AlreadyReferred(
                "This member was already referred; the first referral stands.", field="referral_code"
            ) from error
        raise
    return referral


def referral_attribute_by_agent(*, referee: Member, code: str, user, reason: str) -> Referral:
    """An agent's attribution: the code must be of the same program, a reason is required.

    A qualifying purchase the member already made inside the window qualifies
    the referral at once, as it would have if the code had been given at sign-up.
    """
    if not reason.strip():
        raise ApplicationError("Say why this referral is attributed by hand.", field="reason")
    with transaction.atomic():
        if Referral.objects.filter(referee=referee).exists():
            raise AlreadyReferred(
                "This member was already referred; the first referral stands.", field="referral_code"
            )
        referral = referral_attribute(
            referee=referee, code=code, channel=Referral.Channel.AGENT, user=user, reason=reason.strip()
        )
        purchase = _earlier_qualifying_purchase(referral)
        if purchase is not None:
            referral_qualify(
                referral=referral,
                amount=Decimal(purchase.breakdown["amount"]),
                occurred_at=purchase.occurred_at,
                reference=purchase.reference,
            )
            referral.refresh_from_db()
    return referral


def _earlier_qualifying_purchase(referral: Referral) -> LedgerEntry | None:
    policy = active_policy(program_id=referral.program_id)
    if policy is None:
        return None
    start, end = _window(referral, policy)
    purchases = LedgerEntry.objects.filter(
        account__member=referral.referee,
        kind=LedgerEntry.Kind.EARN,
        idempotency_key__startswith="activity:purchase:",
        occurred_at__gte=start,
        occurred_at__lte=end,
    ).order_by("occurred_at", "id")[:50]
    for entry in purchases:
        amount = entry.breakdown.get("amount")
        if amount is not None and Decimal(amount) >= policy.min_purchase_amount:
            return entry
    return None


# --- Qualification -----------------------------------------------------------------


def _window(referral: Referral, policy: ReferralPolicy) -> tuple[datetime, datetime]:
    return referral.signed_up_at, referral.signed_up_at + timedelta(days=policy.window_days)


def referral_qualify(
    *,
    referral: Referral,
    amount: Decimal,
    occurred_at: datetime,
    reference: str,
    now: datetime | None = None,
) -> Referral | None:
    """Qualify a pending referral with a purchase: score it, then reward or hold it.

    Returns the referral when the purchase qualified it, None when it did not
    (not pending any more, below the minimum, outside the window, no scheme).
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            Referral.objects.select_for_update(of=("self",))
            .select_related("program", "referrer__program", "referee")
            .get(pk=referral.pk)
        )
        if locked.status != Status.PENDING:
            return None
        policy = active_policy(program_id=locked.program_id)
        if policy is None or amount is None or amount < policy.min_purchase_amount:
            return None
        start, end = _window(locked, policy)
        if not start <= occurred_at <= end:
            return None
        findings = fraud_findings(referral=locked, policy=policy, now=now)
        ReferralSignal.objects.bulk_create(
            [
                ReferralSignal(referral=locked, kind=f.kind, weight=f.weight, reason=f.reason, created_at=now)
                for f in findings
            ]
        )
        locked.fraud_score = min(sum(f.weight for f in findings), 32767)
        locked.qualified_at = now
        locked.qualifying_amount = amount
        locked.qualifying_reference = reference[:120]
        locked.updated_at = now
        if locked.fraud_score >= policy.fraud_threshold:
            locked.status = Status.HELD
            locked.held_at = now
            locked.save()
            return locked
        locked.status = Status.QUALIFIED
        locked.save()
        try:
            with transaction.atomic():
                _pay(locked, policy, actor=AUTO_ACTOR, source=Source.SYSTEM, now=now)
        except ApplicationError:
            # The ledger refused (a closed account, say): the referral waits, qualified, for an agent.
            logger.warning("Referral %s qualified but its rewards were refused", locked.pk, exc_info=True)
        return locked


def _pay(referral: Referral, policy: ReferralPolicy, *, actor: Actor, source: str, now: datetime) -> None:
    """Both rewards, each once, then the referral is rewarded. The caller holds the referral's lock."""
    referrer, referee = referral.referrer, referral.referee
    referrer_posting = ledger.credit(
        account=referrer.account,
        points=policy.referrer_points,
        kind=LedgerEntry.Kind.BONUS,
        reason=f"Referral reward: {referee.membership_number} joined with your code",
        actor=actor,
        idempotency_key=f"referral:{referral.pk}:referrer",
        source=source,
        reference=f"referral-{referral.pk}",
        subject=referral,
        now=now,
    )
    referee_posting = ledger.credit(
        account=referee.account,
        points=policy.referee_points,
        kind=LedgerEntry.Kind.BONUS,
        reason=f"Welcome bonus: joined with {referrer.first_name}'s referral code",
        actor=actor,
        idempotency_key=f"referral:{referral.pk}:referee",
        source=source,
        reference=f"referral-{referral.pk}",
        subject=referral,
        now=now,
    )
    referral.referrer_entry = referrer_posting.entry
    referral.referee_entry = referee_posting.entry
    referral.status = Status.REWARDED
    referral.rewarded_at = now
    referral.updated_at = now
    referral.save()
    notifications.notify(
        member=referrer,
        kind="referral_rewarded",
        context={"points": policy.referrer_points, "referral_id": referral.pk},
        dedupe_key=f"referral:{referral.pk}:referrer",
    )
    notifications.notify(
        member=referee,
        kind="referral_welcome",
        context={"points": policy.referee_points, "referral_id": referral.pk},
        dedupe_key=f"referral:{referral.pk}:referee",
    )


# --- Review ------------------------------------------------------------------------

REVIEWABLE = frozenset({Status.HELD, Status.QUALIFIED})
REJECTABLE = frozenset({Status.PENDING, Status.HELD, Status.QUALIFIED})


def _lock(referral: Referral) -> Referral:
    return (
        Referral.objects.select_for_update(of=("self",))
        .select_related("program", "referrer__account", "referee__account")
        .get(pk=referral.pk)
    )


def referral_approve(
    *, referral: Referral, user, reason: str = "", now: datetime | None = None
) -> ReviewResult:
    """Pay a held (or qualified, unpaid) referral. A second approval finds it rewarded and changes nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock(referral)
        if locked.status == Status.REWARDED:
            return ReviewResult(referral=locked, replayed=True)
        if locked.status not in REVIEWABLE:
            raise IllegalTransition(f"A {locked.get_status_display().lower()} referral cannot be approved.")
        policy = ReferralPolicy.objects.filter(program_id=locked.program_id).first()
        if policy is None:
            raise ApplicationError("This program has no referral policy to pay from.", code="no_policy")
        locked.reviewed_by = user
        locked.reviewed_at = now
        locked.decision_reason = reason.strip()[:REASON_LENGTH]
        _pay(locked, policy, actor=Actor.of_user(user), source=Source.AGENT, now=now)
    return ReviewResult(referral=locked)


def referral_reject(*, referral: Referral, user, reason: str, now: datetime | None = None) -> ReviewResult:
    """Close a referral without rewards, with a reason. Rejecting twice keeps the first reason."""
    if not reason or not reason.strip():
        raise ApplicationError("Say why the referral is rejected.", field="reason")
    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock(referral)
        if locked.status == Status.REJECTED:
            return ReviewResult(referral=locked, replayed=True)
        if locked.status not in REJECTABLE:
            raise IllegalTransition(f"A {locked.get_status_display().lower()} referral cannot be rejected.")
        locked.status = Status.REJECTED
        locked.reviewed_by = user
        locked.reviewed_at = now
        locked.decision_reason = reason.strip()[:REASON_LENGTH]
        locked.updated_at = now
        locked.save()
    return ReviewResult(referral=locked)


# --- Policies ----------------------------------------------------------------------


def policy_ensure(*, program: Program, **values) -> ReferralPolicy:
    """The program's policy, created with `values` (defaults otherwise) if it has none."""
    policy, _ = ReferralPolicy.objects.get_or_create(program=program, defaults=values)
    return policy
