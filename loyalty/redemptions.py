"""Redemptions: points turned into rewards, and what happens to a request afterwards.

A request debits the points at once, through the ledger, in the same transaction
that takes one item from stock: both happen or neither does. Locks follow the
project's global order, the member's account first and then the reward row (the
conditional stock UPDATE), so two requests never deadlock, the last item in
stock goes to exactly one member, and one balance is never spent twice.

A redemption's status only moves forward:

    requested -> approved | rejected | cancelled
    approved  -> fulfilled | rejected | cancelled

fulfilled, rejected and cancelled are final. Every change locks the redemption
row, so a double click acts once: the second click finds the new status and,
being the same action, gets the redemption back unchanged (`replayed=True`);
any other move out of a final status is refused (`illegal_transition`).
Rejecting or cancelling refunds the points into the lots they came from (lots
that have expired since give way to a fresh one) and puts the item back in stock.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from loyalty import ledger, notifications
from loyalty.earning import MemberNotActive
from loyalty.errors import ApplicationError
from loyalty.ledger import Actor, IdempotencyConflict
from loyalty.models import LedgerEntry, Member, Redemption, Reward

__all__ = [
    "IllegalTransition",
    "MemberNotActive",
    "OutOfStock",
    "RedemptionResult",
    "RewardUnavailable",
    "TierTooLow",
    "redemption_approve",
    "redemption_cancel",
    "redemption_fulfil",
    "redemption_reject",
    "redemption_request",
]

Status = Redemption.Status
Source = LedgerEntry.Source

KEY_PREFIX = "redemption:"
# The ledger key is the redemption key with a prefix, and both columns hold 200 characters.
MAX_KEY_LENGTH = LedgerEntry._meta.get_field("idempotency_key").max_length - len(KEY_PREFIX)
MAX_REASON_LENGTH = Redemption._meta.get_field("decision_reason").max_length
LEDGER_REASON_LENGTH = LedgerEntry._meta.get_field("reason").max_length

# No 0/O, 1/I/L: a code read out over the phone or typed from a screenshot stays unambiguous.
VOUCHER_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
VOUCHER_GROUPS, VOUCHER_GROUP_LENGTH = 3, 4

TRANSITIONS: dict[str, frozenset[str]] = {
    Status.REQUESTED: frozenset({Status.APPROVED, Status.REJECTED, Status.CANCELLED}),
    Status.APPROVED: frozenset({Status.FULFILLED, Status.REJECTED, Status.CANCELLED}),
}
_VERB = {
    Status.APPROVED: "approved",
    Status.FULFILLED: "fulfilled",
    Status.REJECTED: "rejected",
    Status.CANCELLED: "cancelled",
}


# --- Errors ----------------------------------------------------------------


class RewardUnavailable(ApplicationError):
    code = "reward_unavailable"
    status = 409


class TierTooLow(ApplicationError):
    code = "tier_too_low"
    status = 409


class OutOfStock(ApplicationError):
    code = "out_of_stock"
    status = 409


class IllegalTransition(ApplicationError):
    code = "illegal_transition"
    status = 409


@dataclass(frozen=True)
class RedemptionResult:
    """The redemption after a service call. `replayed`: nothing was written, the call had been made before."""

    redemption: Redemption
    replayed: bool = False


# --- Helpers ---------------------------------------------------------------


def _voucher_code() -> str:
    """A random code like ABCD-EFGH-JKMN: 31**12 (about 8e17) possibilities."""
    groups = (
        "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(VOUCHER_GROUP_LENGTH))
        for _ in range(VOUCHER_GROUPS)
    )
    return "-".join(groups)


def _local(program, moment: datetime) -> str:
    return timezone.localtime(moment, program.tz).strftime("%Y-%m-%d %H:%M")


def _attribute(redemption: Redemption, actor: Actor) -> None:
    """The history record names the person; jobs and API keys leave it to the middleware (none)."""
    if actor.user is not None:
        redemption._history_user = actor.user


def _notify(redemption: Redemption) -> None:
    notifications.notify(
        member=redemption.member,
        kind="redemption_status",
        context={
            "redemption_id": redemption.pk,
            "reward": redemption.reward.name,
            "points": redemption.points,
            "status": redemption.status,
            "reason": redemption.decision_reason,
            "voucher_code": redemption.voucher_code,
            "shipping_note": redemption.shipping_note,
        },
        dedupe_key=f"redemption:{redemption.pk}:{redemption.status}",
    )


def _check_can_redeem(member: Member, reward: Reward, now: datetime) -> None:
    if member.status != Member.Status.ACTIVE:
        raise MemberNotActive(
            f"This membership is {member.get_status_display().lower()}; only active members can redeem.",
            field="member",
        )
    if reward.program_id != member.program_id:
        raise RewardUnavailable("This reward belongs to another program.", field="reward")
    if not reward.is_active:
        raise RewardUnavailable(f"{reward.name} is not available at the moment.", field="reward")
    program = member.program
    if reward.active_from is not None and now < reward.active_from:
        raise RewardUnavailable(
            f"{reward.name} can be redeemed from {_local(program, reward.active_from)}.", field="reward"
        )
    if reward.active_until is not None and now >= reward.active_until:
        raise RewardUnavailable(
            f"{reward.name} could be redeemed until {_local(program, reward.active_until)}.", field="reward"
        )
    needed = reward.min_tier
    if needed is not None and needed.program_id != reward.program_id:
        # Refused by Reward.clean and the admin; a row written around them must not compare
        # ranks of two programs' ladders.
        raise RewardUnavailable(
            f"{reward.name} names a minimum tier of another program; ask an administrator to fix it.",
            field="reward",
        )
    if needed is not None and (member.tier is None or member.tier.rank < needed.rank):
        current = f"at {member.tier.name}" if member.tier else "not in a tier yet"
        raise TierTooLow(
            f"{reward.name} needs the {needed.name} tier or above; the member is {current}.",
            field="reward",
            required_tier=needed.name,
            member_tier=member.tier.name if member.tier else None,
        )


def _take_one_from_stock(reward: Reward) -> None:
    """One conditional UPDATE: it waits for a concurrent request's row lock, then re-checks the stock."""
    if reward.stock is None:
        return
    if not Reward.objects.filter(pk=reward.pk, stock__gt=0).update(stock=F("stock") - 1):
        raise OutOfStock(f"{reward.name} is out of stock.", field="reward")


def _replay(existing: Redemption, *, member: Member, reward: Reward) -> RedemptionResult:
    if existing.member_id != member.pk or existing.reward_id != reward.pk:
        raise IdempotencyConflict(
            f"Idempotency key {existing.idempotency_key!r} was already used for a different redemption.",
            field="idempotency_key",
        )
    return RedemptionResult(redemption=existing, replayed=True)


# --- Services --------------------------------------------------------------


def redemption_request(
    *,
    member: Member,
    reward: Reward,
    idempotency_key: str,
    channel: str,
    actor: Actor,
    requested_by=None,
    now: datetime | None = None,
) -> RedemptionResult:
    """Redeem `reward` for `member`: the points leave the balance now, the item leaves stock now.

    The same key for the same member and reward returns the original redemption
    (whatever happened to it since, and even if the rules would now refuse it);
    the same key for anything else is an `IdempotencyConflict`. A refusal
    (inactive member, unavailable reward, tier too low, out of stock,
    `InsufficientPoints`) changes nothing. `requested_by` defaults to the actor's user.
    """
    if not idempotency_key or not idempotency_key.strip():
        raise ApplicationError(
            "Every redemption needs an idempotency key.",
            code="idempotency_key_required",
            field="idempotency_key",
        )
    if len(idempotency_key) > MAX_KEY_LENGTH:
        raise ApplicationError(
            f"An idempotency key may have at most {MAX_KEY_LENGTH} characters.", field="idempotency_key"
        )
    if channel not in Source.values:
        raise ApplicationError(f"{channel!r} is not a known channel.", field="channel")
    now = now or timezone.now()
    account_id = ledger.open_account(member=member).pk

    with transaction.atomic():
        account = ledger.lock_accounts([account_id])[account_id]
        existing = (
            Redemption.objects.select_related("member", "reward")
            .filter(program_id=member.program_id, idempotency_key=idempotency_key)
            .first()
        )
        if existing is not None:
            return _replay(existing, member=member, reward=reward)
        # Read again under the lock: the caller's copies may be stale, and a tier
        # upgrade from earning happens under this same account lock.
        member = Member.objects.select_related("program", "tier").get(pk=member.pk)
        reward = Reward.objects.select_related("min_tier").get(pk=reward.pk)
        _check_can_redeem(member, reward, now)
        _take_one_from_stock(reward)
        posting = ledger.debit(
            account=account,
            points=reward.cost_points,
            reason=f"Redeemed {reward.name}",
            actor=actor,
            idempotency_key=KEY_PREFIX + idempotency_key,
            source=channel,
            kind=LedgerEntry.Kind.REDEEM,
            reference=f"reward:{reward.pk}",
            now=now,
        )
        if posting.replayed:
            # The ledger knows the key but no redemption does: someone else posted it.
            raise IdempotencyConflict(
                f"Idempotency key {idempotency_key!r} was already used for a different request.",
                field="idempotency_key",
            )
        redemption = Redemption(
            program_id=member.program_id,
            member=member,
            reward=reward,
            points=reward.cost_points,
            status=Status.REQUESTED,
            idempotency_key=idempotency_key,
            channel=channel,
            requested_by=requested_by or actor.user,
            debit_entry=posting.entry,
            created_at=now,
            updated_at=now,
        )
        _attribute(redemption, actor)
        redemption.save()
        _notify(redemption)
    return RedemptionResult(redemption=redemption)


def redemption_approve(
    *, redemption: Redemption, actor: Actor, now: datetime | None = None
) -> RedemptionResult:
    """Accept a requested redemption for fulfilment."""
    return _move(redemption, to=Status.APPROVED, actor=actor, now=now)


def redemption_fulfil(
    *, redemption: Redemption, actor: Actor, shipping_note: str = "", now: datetime | None = None
) -> RedemptionResult:
    """Deliver an approved redemption: a voucher gets a fresh code, a shipment needs its shipping note."""
    note = (shipping_note or "").strip()

    def fulfil(locked: Redemption, _now: datetime) -> list[str]:
        if locked.reward.fulfilment == Reward.Fulfilment.SHIPMENT:
            if not note:
                raise ApplicationError(
                    "A shipped reward needs a shipping note (carrier, tracking number).",
                    code="shipping_note_required",
                    field="shipping_note",
                )
        else:
            locked.voucher_code = _voucher_code()
        locked.shipping_note = note
        return ["voucher_code", "shipping_note"]

    return _move(redemption, to=Status.FULFILLED, actor=actor, now=now, apply=fulfil)


def redemption_reject(
    *,
    redemption: Redemption,
    actor: Actor,
    reason: str,
    channel: str = Source.AGENT,
    now: datetime | None = None,
) -> RedemptionResult:
    """Refuse a redemption: the points go back into their lots and the item back into stock."""
    return _close(redemption, to=Status.REJECTED, actor=actor, reason=reason, channel=channel, now=now)


def redemption_cancel(
    *,
    redemption: Redemption,
    actor: Actor,
    reason: str,
    channel: str = Source.AGENT,
    only_from: str | None = None,
    now: datetime | None = None,
) -> RedemptionResult:
    """Withdraw a redemption (the member changed their mind): points and stock are restored.

    `only_from` limits it to one current status, checked under the row lock (the portal
    cancels only what no agent has approved, even one approved a moment ago).
    """
    return _close(
        redemption,
        to=Status.CANCELLED,
        actor=actor,
        reason=reason,
        channel=channel,
        now=now,
        only_from=only_from,
    )


# --- Transitions -----------------------------------------------------------


def _close(
    redemption: Redemption, *, to: str, actor: Actor, reason: str, channel: str, now, only_from=None
) -> RedemptionResult:
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError(
            "Say why, for the member and the audit trail.", code="reason_required", field="reason"
        )
    if len(reason) > MAX_REASON_LENGTH:
        raise ApplicationError(f"A reason may have at most {MAX_REASON_LENGTH} characters.", field="reason")
    if channel not in Source.values:
        raise ApplicationError(f"{channel!r} is not a known channel.", field="channel")

    def refund(locked: Redemption, now_: datetime) -> list[str]:
        posting = ledger.refund(
            entry=locked.debit_entry,
            reason=f"Redemption of {locked.reward.name} {_VERB[to]}: {reason}"[:LEDGER_REASON_LENGTH],
            actor=actor,
            idempotency_key=f"redemption-refund:{locked.pk}",
            source=channel,
            subject=locked,
            now=now_,
        )
        # Stock made unlimited since the request stays unlimited.
        Reward.objects.filter(pk=locked.reward_id, stock__isnull=False).update(stock=F("stock") + 1)
        locked.refund_entry = posting.entry
        locked.decision_reason = reason
        return ["refund_entry", "decision_reason"]

    # The ledger's lock order: the member's account before anything else.
    account_id = LedgerEntry.objects.values_list("account_id", flat=True).get(pk=redemption.debit_entry_id)
    return _move(
        redemption, to=to, actor=actor, now=now, apply=refund, lock_account=account_id, only_from=only_from
    )


def _move(
    redemption: Redemption,
    *,
    to: str,
    actor: Actor,
    now: datetime | None,
    apply: Callable[[Redemption, datetime], list[str]] | None = None,
    lock_account: int | None = None,
    only_from: str | None = None,
) -> RedemptionResult:
    """Change the status under the redemption's row lock; the same move made twice acts once."""
    now = now or timezone.now()
    with transaction.atomic():
        if lock_account is not None:
            ledger.lock_accounts([lock_account])
        locked = (
            Redemption.objects.select_for_update(no_key=True, of=("self",))
            .select_related("member", "reward", "debit_entry")
            .get(pk=redemption.pk)
        )
        if locked.status == to:
            return RedemptionResult(redemption=locked, replayed=True)
        if to not in TRANSITIONS.get(locked.status, ()) or only_from not in (None, locked.status):
            if locked.status == Status.REQUESTED and to == Status.FULFILLED:
                message = "This redemption must be approved before it is fulfilled."
            else:
                now_status = locked.get_status_display().lower()
                message = f"This redemption is {now_status}; it can no longer be {_VERB[to]}."
            raise IllegalTransition(message, field="status", current=locked.status, requested=to)
        changed = apply(locked, now) if apply else []
        locked.status = to
        locked.updated_at = now
        _attribute(locked, actor)
        locked.save(update_fields=["status", "updated_at", *changed])
        _notify(locked)
    return RedemptionResult(redemption=locked)
