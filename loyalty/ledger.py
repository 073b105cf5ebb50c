"""The points ledger: the only code that writes points.

Every posting runs in one transaction that first locks the member's account row
(`SELECT ... FOR NO KEY UPDATE` on PostgreSQL). Lots and allocations of an
account change only under that lock, so a debit can never spend points another
debit is spending. Operations that touch several accounts lock them in id order
(`lock_accounts`), so two of them can never deadlock.

Every write carries an idempotency key, unique per program. Posting the same key
again returns the original entry; the same key with a different request raises
`IdempotencyConflict`. Entries and allocations are insert-only (the model refuses
updates, and on PostgreSQL a trigger does too); mistakes are corrected by new
entries.

Spendable balance and lots: `balance == sum(entry.points)` and
`pending == sum(entry.pending_points)`. When the balance is not negative it
equals the remaining points of the account's live (non-pending) lots; a negative
balance (a recorded debt, only where the program allows it) has no live lots,
and the next points credited settle it first.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import json
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, models, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from loyalty.bulk import bulk_insert_rows
from loyalty.errors import ApplicationError
from loyalty.models import LedgerEntry, PointAllocation, PointLot, PointsAccount, Program

Kind = LedgerEntry.Kind
Source = LedgerEntry.Source

CREDIT_KINDS = frozenset({Kind.EARN, Kind.BONUS, Kind.ADJUST})
DEBIT_KINDS = frozenset({Kind.REDEEM, Kind.ADJUST})
# Which entries can be reversed, and the kind of entry that reverses them.
REVERSIBLE_KINDS = frozenset({Kind.EARN, Kind.BONUS, Kind.ADJUST, Kind.REDEEM})


# --- Errors ----------------------------------------------------------------


class LedgerError(ApplicationError):
    code = "ledger_error"


class InsufficientPoints(LedgerError):
    code = "insufficient_points"
    status = 409


class IdempotencyConflict(LedgerError):
    code = "idempotency_conflict"
    status = 409


class NothingToReverse(LedgerError):
    code = "already_reversed"
    status = 409


# --- Values ----------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who or what caused an entry: a user, or a labelled job, import or API key."""

    label: str
    user: Any = None

    @classmethod
    def of_user(cls, user) -> Actor:
        return cls(label=f"user:{user.get_username()}", user=user)

    @classmethod
    def job(cls, name: str) -> Actor:
        return cls(label=f"job:{name}")


@dataclass(frozen=True)
class Posting:
    """The result of one write. `replayed` is True when the key had been posted before."""

    entry: LedgerEntry
    replayed: bool = False

    @property
    def balance(self) -> int:
        return self.entry.balance_after

    @property
    def pending(self) -> int:
        return self.entry.pending_after


@dataclass
class JobReport:
    accounts: int = 0
    lots: int = 0
    points: int = 0
    entries: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class BalanceSnapshot:
    balance: int
    pending: int
    last_entry_id: int | None


@dataclass(frozen=True)
class Discrepancy:
    account_id: int
    check: str
    expected: int
    actual: int


# --- Helpers ---------------------------------------------------------------


def _fingerprint(**request: Any) -> str:
    """A stable hash of what the caller asked for, to tell a replay from a conflict."""
    canonical = json.dumps(request, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _subject_fields(subject: models.Model | None) -> dict:
    if subject is None:
        return {"subject_type": None, "subject_id": None}
    return {"subject_type": ContentType.objects.get_for_model(subject), "subject_id": subject.pk}


def _subject_ref(subject: models.Model | None) -> str | None:
    return None if subject is None else f"{subject._meta.label_lower}:{subject.pk}"


def add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def expiry_for(program: Program, earned_at: datetime) -> datetime | None:
    """When points earned at `earned_at` expire under the program's policy (its time zone)."""
    policy = program.expiry_policy
    if policy == Program.ExpiryPolicy.NEVER:
        return None
    local = timezone.localtime(earned_at, program.tz)
    if policy == Program.ExpiryPolicy.MONTHS_AFTER_EARN:
        return add_months(local, program.expiry_months)
    # End of the Nth calendar year after the year of earning, at local midnight.
    return local.replace(
        year=local.year + program.expiry_years + 1,
        month=1,
        day=1,
        hour=0,
        minute=0,
        second=0,
        microsecond=0,
    )


def lock_accounts(account_ids) -> dict[int, PointsAccount]:
    """Lock several accounts in id order (no deadlocks) inside the caller's transaction.

    Rows of other tables must be read in a later statement, not joined here: on
    PostgreSQL a locking statement that waited sees the locked rows as committed
    meanwhile, but joined rows as they were when it started.
    """
    accounts = (
        PointsAccount.objects.select_for_update(no_key=True, of=("self",))
        .select_related("program")
        .filter(pk__any=set(account_ids))
        .order_by("pk")
    )
    return {account.pk: account for account in accounts}


# What a posting reads of the locked account and its program; the rest of each row
# loads on first access, like deferred fields.
_LOCKED_ACCOUNT_FIELDS = frozenset(
    {
        "id",
        "member_id",
        "program_id",
        "balance",
        "pending",
        "lifetime_earned",
        "lifetime_redeemed",
        "lifetime_expired",
    }
)
_LOCKED_PROGRAM_FIELDS = frozenset(
    {
        "id",
        "time_zone",
        "expiry_policy",
        "expiry_months",
        "expiry_years",
        "pending_days",
        "negative_balance_policy",
    }
)


@functools.cache
def _lock_statement(vendor: str) -> tuple[str, list[str], list[str]]:
    """The locking SELECT, and the account's and the program's fields it returns, in model order."""
    account = [f for f in PointsAccount._meta.concrete_fields if f.attname in _LOCKED_ACCOUNT_FIELDS]
    program = [f for f in Program._meta.concrete_fields if f.attname in _LOCKED_PROGRAM_FIELDS]
    columns = [f"a.{f.column}" for f in account] + [f"p.{f.column}" for f in program]
    lock = " FOR NO KEY UPDATE OF a" if vendor == "postgresql" else ""
    sql = (
        f"SELECT {', '.join(columns)} FROM loyalty_pointsaccount a "
        f"JOIN loyalty_program p ON p.id = a.program_id WHERE a.id = %s{lock}"
    )
    return sql, [f.attname for f in account], [f.attname for f in program]


def _lock(account_id: int) -> PointsAccount:
    """The account row, locked, with its program's policy: one statement written once.

    Every posting starts here, and compiling the equivalent ORM query (with
    select_related and select_for_update) cost more than running it.
    """
    sql, account_fields, program_fields = _lock_statement(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, [account_id])
        row = cursor.fetchone()
    if row is None:
        raise PointsAccount.DoesNotExist(f"Points account {account_id} does not exist.")
    split = len(account_fields)
    account = PointsAccount.from_db(connection.alias, account_fields, row[:split])
    account.program = Program.from_db(connection.alias, program_fields, row[split:])
    return account


class _Insert:
    """`INSERT ... RETURNING id` of one new row, the statement built once per model: what
    `Model.objects.create` sends, without compiling it on every posting. Entries and lots
    have no save() logic or signal receivers beyond the immutability guard, which only
    refuses updates."""

    def __init__(self, model: type[models.Model]):
        self.model = model
        self.fields = [f for f in model._meta.concrete_fields if not f.primary_key]

    @functools.cached_property
    def sql(self) -> str:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in self.fields)
        marks = ", ".join(["%s"] * len(self.fields))
        return (
            f"INSERT INTO {quote(self.model._meta.db_table)} ({columns}) VALUES ({marks}) "
            f"RETURNING {quote(self.model._meta.pk.column)}"
        )

    def __call__(self, **values) -> models.Model:
        obj = self.model(**values)
        params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in self.fields]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            obj.pk = cursor.fetchone()[0]
        obj._state.adding = False
        obj._state.db = connection.alias
        return obj


_insert_entry = _Insert(LedgerEntry)
_insert_lot = _Insert(PointLot)


def _post_once(*, program_id: int, key: str, fingerprint: str, post) -> Posting:
    """Run `post` in a transaction; a duplicate key turns into a replay or a conflict."""
    if not key:
        raise LedgerError("Every ledger write needs an idempotency key.", field="idempotency_key")
    try:
        with transaction.atomic():
            return post()
    except IntegrityError:
        existing = LedgerEntry.objects.filter(program_id=program_id, idempotency_key=key).first()
        if existing is None:
            raise
    except LedgerError:
        # A replay may break a rule the original passed (its points are spent, the
        # entry it reversed has nothing left): the key decides, not the rule. Looked
        # up only on failure, so a normal posting costs no extra query.
        existing = LedgerEntry.objects.filter(program_id=program_id, idempotency_key=key).first()
        if existing is None:
            raise
    if existing.fingerprint != fingerprint:
        raise IdempotencyConflict(
            f"Idempotency key {key!r} was already used for a different request.",
            field="idempotency_key",
        )
    return Posting(entry=existing, replayed=True)


def _save_account(account: PointsAccount, now: datetime) -> None:
    account.updated_at = now
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE loyalty_pointsaccount SET balance = %s, pending = %s, lifetime_earned = %s, "
            "lifetime_redeemed = %s, lifetime_expired = %s, updated_at = %s WHERE id = %s",
            [
                account.balance,
                account.pending,
                account.lifetime_earned,
                account.lifetime_redeemed,
                account.lifetime_expired,
                connection.ops.adapt_datetimefield_value(now),
                account.pk,
            ],
        )


def _save_accounts(accounts: list[PointsAccount], now: datetime) -> None:
    """`_save_account` of many accounts in one statement."""
    accounts = sorted(accounts, key=lambda account: account.pk)
    for account in accounts:
        account.updated_at = now
    rows = [
        (
            account.pk,
            account.balance,
            account.pending,
            account.lifetime_earned,
            account.lifetime_redeemed,
            account.lifetime_expired,
        )
        for account in accounts
    ]
    names = "id, balance, pending, earned, redeemed, expired"
    if connection.vendor == "postgresql":
        # One array per column: psycopg parses thousands of placeholders in Python on every call.
        source = f"unnest({', '.join(['%s::bigint[]'] * 6)}) AS b({names})"
        params = [list(column) for column in zip(*rows, strict=True)]
    else:
        # VALUES columns are column1..6 on SQLite.
        values = ", ".join(["(" + ", ".join(["CAST(%s AS BIGINT)"] * 6) + ")"] * len(rows))
        source = (
            "(SELECT column1 AS id, column2 AS balance, column3 AS pending, column4 AS earned, "
            f"column5 AS redeemed, column6 AS expired FROM (VALUES {values}) AS v) AS b"
        )
        params = [value for row in rows for value in row]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE loyalty_pointsaccount SET balance = b.balance, pending = b.pending, "
            "lifetime_earned = b.earned, lifetime_redeemed = b.redeemed, lifetime_expired = b.expired, "
            f"updated_at = %s FROM {source} WHERE loyalty_pointsaccount.id = b.id",
            [connection.ops.adapt_datetimefield_value(now), *params],
        )


def _entry_values(*, account: PointsAccount, kind: str, points: int, pending_points: int = 0, now, **fields):
    """The fields of a new entry on `account`, whose balance and pending it moves."""
    account.balance += points
    account.pending += pending_points
    return {
        "program_id": account.program_id,
        "account": account,
        "kind": kind,
        "points": points,
        "pending_points": pending_points,
        "balance_after": account.balance,
        "pending_after": account.pending,
        "posted_at": now,
        **fields,
    }


def _new_entry(**values):
    return _insert_entry(**_entry_values(**values))


def _entry_fields(
    *,
    actor: Actor,
    reason: str,
    key: str,
    fingerprint: str,
    source: str,
    occurred_at,
    reference: str,
    breakdown,
    subject,
    now,
) -> dict:
    if not reason or not reason.strip():
        raise LedgerError("A reason is required.", field="reason")
    # The database refuses only an empty label; a blank one would say nothing either.
    if not actor.label or not actor.label.strip():
        raise LedgerError("Every entry needs the person or job that caused it.", field="actor")
    return {
        "occurred_at": occurred_at or now,
        "source": source,
        "reference": reference,
        "idempotency_key": key,
        "fingerprint": fingerprint,
        "reason": reason.strip(),
        "actor": actor.user,
        "actor_label": actor.label,
        "breakdown": breakdown or {},
        **_subject_fields(subject),
    }


def _live_lots_needed(account_id: int, points: int) -> list[tuple[int, int]]:
    """The (lot id, remaining) pairs a debit of `points` consumes, soonest-expiring first.

    A running sum in the database returns just the lots needed, however many
    the account holds.
    """
    with connection.cursor() as cursor:
        cursor.execute(_LIVE_LOTS_NEEDED, [account_id, points])
        return cursor.fetchall()


# Written out rather than compiled from the ORM on every debit; the conditions are
# those of the partial index `lot_live_by_expiry`, so it serves the query.
_LIVE_LOTS_NEEDED = (
    "SELECT id, remaining FROM (SELECT id, remaining, expires_at, "
    "SUM(remaining) OVER (ORDER BY expires_at ASC NULLS LAST, id ASC) - remaining AS before "
    "FROM loyalty_pointlot WHERE account_id = %s AND NOT pending AND remaining > 0) AS live "
    "WHERE before < %s ORDER BY expires_at ASC NULLS LAST, id ASC"
)


def _consume(account: PointsAccount, entry: LedgerEntry, points: int, now) -> int:
    """Take up to `points` from live lots for `entry`; returns how many were found."""
    lots = _live_lots_needed(account.pk, points)
    if not lots:
        return 0
    allocations, left = [], points
    for lot_id, remaining in lots:
        take = min(left, remaining)
        allocations.append(PointAllocation(entry=entry, lot_id=lot_id, points=take, created_at=now))
        left -= take
    last = allocations[-1]
    # Every lot but the last is emptied; the last gives what was left to take.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE loyalty_pointlot SET remaining = CASE WHEN id = %s THEN remaining - %s ELSE 0 END "
            f"WHERE id IN ({', '.join(['%s'] * len(lots))})",
            [last.lot_id, last.points, *(lot_id for lot_id, _ in lots)],
        )
    PointAllocation.objects.bulk_create(allocations)
    return points - left


def _settle_debt(entry: LedgerEntry, lots: list[PointLot], debt: int, now) -> int:
    """Points arriving on a negative balance pay the debt off first.

    The settlement is an allocation from the arriving lot to the arriving entry
    itself, so "explain" can say where those points went. Returns the points used.
    """
    allocations, left = [], debt
    for lot in lots:
        take = min(left, lot.remaining)
        if take <= 0:
            continue
        allocations.append(PointAllocation(entry=entry, lot=lot, points=take, created_at=now))
        lot.remaining -= take
        PointLot.objects.filter(pk=lot.pk).update(remaining=lot.remaining)
        left -= take
    PointAllocation.objects.bulk_create(allocations)
    return debt - left


def _shortfall_allowed(account: PointsAccount, kind: str, allow_debt: bool) -> bool:
    """Only corrections (reversals, adjustments) may push a balance below zero, and only
    where the program records debts. A redemption never does."""
    return (
        allow_debt
        and kind in (Kind.REVERSE, Kind.ADJUST)
        and account.program.negative_balance_policy == Program.NegativeBalancePolicy.ALLOW_DEBT
    )


# --- Writes ----------------------------------------------------------------


def open_account(*, member) -> PointsAccount:
    """The member's points account, created empty on first use."""
    account, _ = PointsAccount.objects.get_or_create(
        member=member, defaults={"program_id": member.program_id}
    )
    return account


@dataclass(frozen=True)
class Credit:
    """One credit of `credit_many`: the arguments of `credit`, less the actor and the clock."""

    account_id: int
    points: int
    reason: str
    idempotency_key: str
    source: str
    kind: str = Kind.EARN
    occurred_at: datetime | None = None
    reference: str = ""
    expires_at: datetime | str | None = "policy"
    available_from: datetime | None = None
    breakdown: dict | None = None
    subject: models.Model | None = None


def _credit_checked(request: Credit) -> str:
    """Refuse a credit that is not one; returns its fingerprint."""
    if request.kind not in CREDIT_KINDS:
        raise LedgerError(f"{request.kind!r} is not a credit kind.", field="kind")
    if not isinstance(request.points, int) or request.points <= 0:
        raise LedgerError("Points to credit must be a positive whole number.", field="points")
    return _fingerprint(
        op="credit",
        account=request.account_id,
        points=request.points,
        kind=request.kind,
        reason=request.reason,
        reference=request.reference,
        occurred_at=request.occurred_at,
        subject=_subject_ref(request.subject),
    )


def _credit_rows(locked: PointsAccount, request: Credit, fingerprint: str, actor: Actor, now) -> tuple:
    """The entry's and the lot's fields of one credit on the locked account, whose totals it moves.

    Returns (entry fields, lot fields without the entry, the debt the new points settle first).
    """
    program = locked.program
    points, kind = request.points, request.kind
    earned_at = request.occurred_at or now
    start = request.available_from
    if start is None:
        wait = program.pending_days if kind == Kind.EARN else 0
        start = earned_at + timedelta(days=wait)
    is_pending = start > now
    expiry = expiry_for(program, earned_at) if request.expires_at == "policy" else request.expires_at
    balance_before = locked.balance
    entry = _entry_values(
        account=locked,
        kind=kind,
        now=now,
        points=0 if is_pending else points,
        pending_points=points if is_pending else 0,
        **_entry_fields(
            actor=actor,
            reason=request.reason,
            key=request.idempotency_key,
            fingerprint=fingerprint,
            source=request.source,
            occurred_at=request.occurred_at,
            reference=request.reference,
            breakdown=request.breakdown,
            subject=request.subject,
            now=now,
        ),
    )
    lot = {
        "account": locked,
        "original": points,
        "remaining": points,
        "pending": is_pending,
        "available_from": start,
        "expires_at": expiry,
    }
    debt = 0
    if not is_pending:
        if kind != Kind.ADJUST:
            locked.lifetime_earned += points
        debt = max(-balance_before, 0)
    return entry, lot, debt


def credit(
    *,
    account: PointsAccount,
    points: int,
    reason: str,
    actor: Actor,
    idempotency_key: str,
    source: str,
    kind: str = Kind.EARN,
    occurred_at: datetime | None = None,
    reference: str = "",
    expires_at: datetime | str | None = "policy",
    available_from: datetime | None = None,
    breakdown: dict | None = None,
    subject: models.Model | None = None,
    now: datetime | None = None,
) -> Posting:
    """Add points in a new lot. Earned points wait the program's pending days unless
    `available_from` says otherwise; they expire by the program's policy unless
    `expires_at` is given (None: never)."""
    request = Credit(
        account_id=account.pk,
        points=points,
        reason=reason,
        idempotency_key=idempotency_key,
        source=source,
        kind=kind,
        occurred_at=occurred_at,
        reference=reference,
        expires_at=expires_at,
        available_from=available_from,
        breakdown=breakdown,
        subject=subject,
    )
    fingerprint = _credit_checked(request)

    def post() -> Posting:
        now_ = now or timezone.now()
        locked = _lock(account.pk)
        entry_fields, lot_fields, debt = _credit_rows(locked, request, fingerprint, actor, now_)
        entry = _insert_entry(**entry_fields)
        lot = _insert_lot(entry=entry, **lot_fields)
        if debt:
            _settle_debt(entry, [lot], debt, now_)
        _save_account(locked, now_)
        return Posting(entry=entry)

    return _post_once(program_id=account.program_id, key=idempotency_key, fingerprint=fingerprint, post=post)


def _saved(obj: models.Model) -> models.Model:
    """`obj`, built with the primary key of the row stored for it, marked as loaded from the database."""
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj


def credit_many(
    *, accounts: dict[int, PointsAccount], credits: list[Credit], actor: Actor, now: datetime | None = None
) -> list[Posting]:
    """`credit` for many credits at once, in order: a few statements, not a few per credit.

    `accounts` are the credited accounts, locked by the caller (`lock_accounts`) in its
    transaction; their totals are moved in memory and saved here. Each credit writes the
    entry and lot `credit` would. The caller has made sure the keys are new (a key posted
    before raises IntegrityError, to be handled by the caller: there is no replay here).
    """
    if not credits:
        return []
    now_ = now or timezone.now()
    rows = [
        _credit_rows(accounts[request.account_id], request, _credit_checked(request), actor, now_)
        for request in credits
    ]
    # Sent as rows of values: building the model instances for COPY cost more than sending them.
    entries = bulk_insert_rows(LedgerEntry, [entry for entry, _, _ in rows], build=True)
    lot_ids = bulk_insert_rows(
        PointLot, [{"entry_id": entry.pk, **lot} for entry, (_, lot, _) in zip(entries, rows, strict=True)]
    )
    for entry, lot_id, (_, lot, debt) in zip(entries, lot_ids, rows, strict=True):
        if debt:
            _settle_debt(entry, [_saved(PointLot(id=lot_id, entry=entry, **lot))], debt, now_)
    _save_accounts([accounts[account_id] for account_id in {request.account_id for request in credits}], now_)
    return [Posting(entry=entry) for entry in entries]


def debit(
    *,
    account: PointsAccount,
    points: int,
    reason: str,
    actor: Actor,
    idempotency_key: str,
    source: str,
    kind: str = Kind.REDEEM,
    occurred_at: datetime | None = None,
    reference: str = "",
    breakdown: dict | None = None,
    subject: models.Model | None = None,
    allow_debt: bool = False,
    now: datetime | None = None,
) -> Posting:
    """Spend points from live lots, soonest-expiring first. Refuses to go below zero
    (`InsufficientPoints`), except an adjustment where the program records debts."""
    if kind not in DEBIT_KINDS:
        raise LedgerError(f"{kind!r} is not a debit kind.", field="kind")
    if not isinstance(points, int) or points <= 0:
        raise LedgerError("Points to debit must be a positive whole number.", field="points")
    fingerprint = _fingerprint(
        op="debit",
        account=account.pk,
        points=points,
        kind=kind,
        reason=reason,
        reference=reference,
        occurred_at=occurred_at,
        subject=_subject_ref(subject),
    )

    def post() -> Posting:
        now_ = now or timezone.now()
        locked = _lock(account.pk)
        available = max(locked.balance, 0)
        if points > available and not _shortfall_allowed(locked, kind, allow_debt):
            raise InsufficientPoints(
                f"Only {available} points are available; {points} were asked for.",
                field="points",
                available=available,
                shortfall=points - available,
            )
        entry = _new_entry(
            account=locked,
            kind=kind,
            points=-points,
            now=now_,
            **_entry_fields(
                actor=actor,
                reason=reason,
                key=idempotency_key,
                fingerprint=fingerprint,
                source=source,
                occurred_at=occurred_at,
                reference=reference,
                breakdown=breakdown,
                subject=subject,
                now=now_,
            ),
        )
        _consume(locked, entry, min(points, available), now_)
        if kind == Kind.REDEEM:
            locked.lifetime_redeemed += points
        _save_account(locked, now_)
        return Posting(entry=entry)

    return _post_once(program_id=account.program_id, key=idempotency_key, fingerprint=fingerprint, post=post)


def adjust(
    *,
    account: PointsAccount,
    points: int,
    reason: str,
    actor: Actor,
    idempotency_key: str,
    source: str = Source.AGENT,
    subject: models.Model | None = None,
    allow_debt: bool = False,
    now: datetime | None = None,
) -> Posting:
    """A manual correction, up or down. The reason and actor are required."""
    if actor.user is None and not actor.label.startswith(("job:", "import:", "api:")):
        raise LedgerError("An adjustment needs the person or job that made it.", field="actor")
    if not isinstance(points, int) or points == 0:
        raise LedgerError("An adjustment must add or remove at least one point.", field="points")
    common = {
        "account": account,
        "reason": reason,
        "actor": actor,
        "idempotency_key": idempotency_key,
        "source": source,
        "kind": Kind.ADJUST,
        "subject": subject,
        "now": now,
    }
    if points > 0:
        return credit(points=points, **common)
    return debit(points=-points, allow_debt=allow_debt, **common)


def reverse(
    *,
    entry: LedgerEntry,
    reason: str,
    actor: Actor,
    idempotency_key: str,
    source: str,
    points: int | None = None,
    kind: str = Kind.REVERSE,
    subject: models.Model | None = None,
    allow_debt: bool = False,
    breakdown: dict | None = None,
    now: datetime | None = None,
) -> Posting:
    """Undo all or part of an earlier entry, never more than it moved in total.

    Reversing a credit takes the points back, first from the lot it created; a
    shortfall is refused, or recorded as a debt where allowed. Reversing a debit
    puts the points back into the lots it consumed while they are still live, and
    the rest into a new lot expiring by the program's policy.

    A credit whose lot has expired (wholly or the part not spent) can be reversed
    only for what did not expire: the expired points already left the balance with
    their expire entry, and taking them again from the member's other lots would
    charge the member twice for the same points. What the credit's lot still holds
    is taken from it; what was spent from it is taken from the other live lots (or
    becomes a shortfall or a debt), as before. `reversible_points` says how many
    points are left to reverse.
    """
    if entry.kind not in REVERSIBLE_KINDS:
        raise LedgerError(f"A {entry.get_kind_display().lower()} entry cannot be reversed.", field="entry")
    if kind not in (Kind.REVERSE, Kind.REFUND):
        raise LedgerError(f"{kind!r} is not a reversal kind.", field="kind")
    if kind == Kind.REFUND and entry.kind != Kind.REDEEM:
        raise LedgerError("Only a redemption can be refunded.", field="entry")
    if points is not None and (not isinstance(points, int) or points <= 0):
        raise LedgerError("Points to reverse must be a positive whole number.", field="points")
    fingerprint = _fingerprint(
        op="reverse",
        entry=entry.pk,
        points=points,
        kind=kind,
        reason=reason,
        subject=_subject_ref(subject),
    )

    def post() -> Posting:
        now_ = now or timezone.now()
        locked = _lock(entry.account_id)
        moved = entry.points + entry.pending_points  # what the entry added (+) or took (-)
        lot = PointLot.objects.get(entry=entry) if moved > 0 else None
        left, expired = _left_to_reverse(entry, moved, lot)
        if left <= 0:
            if expired:
                raise NothingToReverse(
                    f"Nothing of this entry is left to reverse: {expired} of its points expired.",
                    field="entry",
                )
            raise NothingToReverse("This entry has already been fully reversed.", field="entry")
        amount = left if points is None else points
        if amount > left:
            why = f" ({expired} expired)" if expired else ""
            raise LedgerError(f"Only {left} points of this entry are left to reverse{why}.", field="points")
        fields = _entry_fields(
            actor=actor,
            reason=reason,
            key=idempotency_key,
            fingerprint=fingerprint,
            source=source,
            occurred_at=None,
            reference=entry.reference,
            breakdown=breakdown,
            subject=subject,
            now=now_,
        )
        if moved > 0:
            posting = _reverse_credit(locked, entry, lot, amount, kind, fields, allow_debt, now_)
        else:
            posting = _reverse_debit(locked, entry, amount, kind, fields, now_)
        _save_account(locked, now_)
        return posting

    return _post_once(program_id=entry.program_id, key=idempotency_key, fingerprint=fingerprint, post=post)


def _left_to_reverse(entry: LedgerEntry, moved: int, lot: PointLot | None) -> tuple[int, int]:
    """Points of `entry` a reversal may still take, and the points of its lot that expired."""
    undone = -(entry.reversals.aggregate(total=Sum(F("points") + F("pending_points")))["total"] or 0)
    expired = lot.expired if lot is not None else 0
    return max(abs(moved) - abs(undone) - expired, 0), expired


def reversible_points(*, entry: LedgerEntry) -> int:
    """How many points a reversal of `entry` can still take: what it moved, less what earlier
    reversals undid and, for a credit, less what expired from its lot. Call it under the
    account's lock (`lock_accounts`) when the answer decides a posting."""
    if entry.kind not in REVERSIBLE_KINDS:
        return 0
    moved = entry.points + entry.pending_points
    lot = PointLot.objects.filter(entry=entry).first() if moved > 0 else None
    return _left_to_reverse(entry, moved, lot)[0]


def refund(
    *,
    entry: LedgerEntry,
    reason: str,
    actor: Actor,
    idempotency_key: str,
    source: str,
    subject: models.Model | None = None,
    now: datetime | None = None,
) -> Posting:
    """Give a redemption's points back (a cancelled or rejected redemption)."""
    return reverse(
        entry=entry,
        reason=reason,
        actor=actor,
        idempotency_key=idempotency_key,
        source=source,
        kind=Kind.REFUND,
        subject=subject,
        now=now,
    )


def _reverse_credit(account, entry, lot, amount, kind, fields, allow_debt, now) -> Posting:
    if lot.pending:
        # Not yet spendable: the points simply leave the pending lot.
        reversal = _new_entry(
            account=account,
            kind=kind,
            points=0,
            pending_points=-amount,
            reverses=entry,
            now=now,
            **fields,
        )
        PointAllocation.objects.create(entry=reversal, lot=lot, points=amount, created_at=now)
        # A pending lot reversed to nothing is closed, so activation never picks it up.
        PointLot.objects.filter(pk=lot.pk).update(
            remaining=F("remaining") - amount, pending=lot.remaining > amount
        )
        return Posting(entry=reversal)
    available = max(account.balance, 0)
    if amount > available and not _shortfall_allowed(account, Kind.REVERSE, allow_debt):
        raise InsufficientPoints(
            f"The member has only {available} of the {amount} points to take back.",
            field="points",
            available=available,
            shortfall=amount - available,
        )
    reversal = _new_entry(account=account, kind=kind, points=-amount, reverses=entry, now=now, **fields)
    # The points this entry created go first, then the soonest-expiring others (for the
    # part that was spent; the expired part is not in `amount`, see `reverse`).
    own = min(amount, lot.remaining)
    if own:
        PointAllocation.objects.create(entry=reversal, lot=lot, points=own, created_at=now)
        PointLot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - own)
    rest = min(amount - own, max(available - own, 0))
    if rest:
        _consume(account, reversal, rest, now)
    return Posting(entry=reversal)


def _reverse_debit(account, entry, amount, kind, fields, now) -> Posting:
    balance_before = account.balance
    reversal = _new_entry(account=account, kind=kind, points=amount, reverses=entry, now=now, **fields)
    if kind == Kind.REFUND:
        account.lifetime_redeemed -= amount
    # Points that only cancel a debt go into no lot; the rest must be lot-backed.
    to_lots = max(0, balance_before + amount) - max(0, balance_before)
    # Net points the debit still holds in each lot (earlier reversals gave some back).
    held = {
        row["lot"]: row["net"]
        for row in PointAllocation.objects.filter(Q(entry=entry) | Q(entry__reverses=entry))
        .values("lot")
        .annotate(net=Sum("points"))
        .filter(net__gt=0)
    }
    lots = PointLot.objects.filter(pk__in=held, expiry_entry__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    # Latest-expiring lots get their points back first: they stay spendable longest.
    lots = lots.order_by(F("expires_at").desc(nulls_first=True), "-id")
    left, allocations = to_lots, []
    for lot in lots:
        give = min(left, held[lot.pk])
        if give <= 0:
            break
        allocations.append(PointAllocation(entry=reversal, lot=lot, points=-give, created_at=now))
        PointLot.objects.filter(pk=lot.pk).update(remaining=F("remaining") + give)
        left -= give
    PointAllocation.objects.bulk_create(allocations)
    if left:
        # Lots that have expired since cannot take points back: a fresh lot does.
        PointLot.objects.create(
            account=account,
            entry=reversal,
            original=left,
            remaining=left,
            pending=False,
            available_from=now,
            expires_at=expiry_for(account.program, now),
        )
    return Posting(entry=reversal)


# --- Batch jobs ------------------------------------------------------------


@dataclass(frozen=True)
class _BatchJob:
    """A set-based job over due lots: one entry per account, then lots and accounts updated."""

    kind: str
    key_prefix: str
    reason: str
    actor_label: str
    due: str  # predicate over the lot table aliased `l`; params: [flag, now]
    flag: bool
    entry_points: str  # (points, pending_points, balance_after, pending_after, occurred_at)
    lots_set: str
    account_set: str


_EXPIRE = _BatchJob(
    kind=Kind.EXPIRE,
    key_prefix="expire:lot:",
    reason="Points reached their expiry date",
    actor_label="job:expire_points",
    due="l.pending = %s AND l.remaining > 0 AND l.expires_at IS NOT NULL AND l.expires_at <= %s",
    flag=False,
    entry_points="-SUM(l.remaining), 0, a.balance - SUM(l.remaining), a.pending, MAX(l.expires_at)",
    lots_set="expired = l.expired + l.remaining, remaining = 0, expiry_entry_id = b.entry_id",
    account_set="balance = a.balance + b.points, lifetime_expired = a.lifetime_expired - b.points",
)
_ACTIVATE = _BatchJob(
    kind=Kind.ACTIVATE,
    key_prefix="activate:lot:",
    reason="Pending points became available",
    actor_label="job:activate_pending",
    due="l.pending = %s AND l.remaining > 0 AND l.available_from <= %s",
    flag=True,
    entry_points=(
        "SUM(l.remaining), -SUM(l.remaining), a.balance + SUM(l.remaining), a.pending - SUM(l.remaining), "
        "MAX(l.available_from)"
    ),
    lots_set="pending = %s",
    account_set=(
        "balance = a.balance + b.points, pending = a.pending - b.points, "
        "lifetime_earned = a.lifetime_earned + b.points"
    ),
)


# Lots read per batch of the expiry job on PostgreSQL (elsewhere at most
# PORTABLE_BATCH_SIZE). Each batch is one transaction holding its accounts' locks for a
# fraction of a second; fewer, bigger batches spend less on commits and round trips.
EXPIRY_BATCH_SIZE = 20_000
# Connections the expiry job and command use by default (`expire_due_lots` itself uses one
# unless told otherwise). Nearly all of a batch is PostgreSQL writing lots, entries and
# their indexes on one CPU; batches of other accounts can be written at the same time. On
# two otherwise idle CPUs two at once expired a million lots in 9-11 s instead of 15-19 s;
# the gain shrinks to nothing when other work already takes the second CPU.
EXPIRY_WORKERS = 2
# The largest batch (in lots read) of the portable `_run_batch`, and activation's default.
PORTABLE_BATCH_SIZE = 2000


def expire_due_lots(
    *, now: datetime | None = None, batch_size: int = EXPIRY_BATCH_SIZE, workers: int = 1, progress=None
) -> JobReport:
    """Expire every live lot whose expiry moment has passed, one entry per account.

    `workers` > 1 runs that many batches at once, each on a connection of its own, on
    PostgreSQL and when the job owns its transactions (elsewhere it runs them one by one).
    """
    return _run_batches(
        _EXPIRE, now=now or timezone.now(), batch_size=batch_size, progress=progress, workers=workers
    )


def activate_pending_lots(
    *, now: datetime | None = None, batch_size: int = PORTABLE_BATCH_SIZE, progress=None
) -> JobReport:
    """Make pending lots whose waiting time is over spendable, one entry per account.

    An account carrying a debt has it settled from the newly available points.
    """
    return _run_batches(_ACTIVATE, now=now or timezone.now(), batch_size=batch_size, progress=progress)


def _run_batches(job: _BatchJob, *, now: datetime, batch_size: int, progress, workers: int = 1) -> JobReport:
    """Batched by account, each batch one transaction of a few statements, never a query per lot.

    Safe to run twice at once (the second waits for the account locks, then
    re-reads and finds nothing due) and after a crash (a batch commits whole or
    not at all, and a rerun picks up what is still due). With several workers the
    batches, of disjoint accounts, commit in any order; each is still whole or absent.
    """
    report = JobReport()
    lock = threading.Lock()

    def record(created: list, lots: int) -> None:
        with lock:
            report.accounts += len(created)
            report.lots += lots
            report.points += sum(points for _, _, points in created)
            report.entries.extend(entry_id for entry_id, _, _ in created)
            if progress:
                progress(len(created))

    # Raw SQL must get a moment the way the ORM stores it: on SQLite that is a naive
    # UTC string, and a raw aware datetime would be compared (and stored) as text
    # with its offset, so a Paris-time `now` an hour off. PostgreSQL is unaffected.
    due_params = [job.flag, connection.ops.adapt_datetimefield_value(now)]
    if not _one_statement_batches(job):
        # The portable batch sends each account id, and three values per entry, as statement
        # parameters: SQLite takes at most 32,766 of them, PostgreSQL 65,535.
        batch_size = min(batch_size, PORTABLE_BATCH_SIZE)
    batches = _due_batches(job, due_params, batch_size)
    # Other connections cannot see a caller's uncommitted transaction, and SQLite writes
    # one transaction at a time anyway.
    if workers > 1 and connection.vendor == "postgresql" and not connection.in_atomic_block:
        _run_in_parallel(
            batches, lambda ids: record(*_batch_transaction(job, ids, due_params, now)), workers=workers
        )
    else:
        for ids in batches:
            record(*_batch_transaction(job, ids, due_params, now))
    return report


def _due_batches(job: _BatchJob, due_params: list, batch_size: int):
    """The account ids of each batch: the next accounts with due lots, `batch_size` lots at a time.

    Each batch starts after the last account of the one before, whether or not that one has
    committed yet, so batches never share an account.
    """
    after = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT l.account_id FROM loyalty_pointlot l WHERE {job.due} AND l.account_id > %s "
                "ORDER BY l.account_id LIMIT %s",
                [*due_params, after, batch_size],
            )
            ids = sorted({row[0] for row in cursor.fetchall()})
        if not ids:
            return
        after = ids[-1]
        yield ids


def _batch_transaction(job: _BatchJob, ids: list[int], due_params: list, now) -> tuple[list, int]:
    """One batch in a transaction of its own, or in the caller's (as a savepoint)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            # The job is re-runnable: a commit lost in a crash is redone by the next
            # run, so the batch need not wait for its WAL flush. Only for a transaction
            # of our own: a caller's transaction keeps its durability.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
        return _run_batch(job, ids, due_params, now)


def _run_in_parallel(items, work, *, workers: int) -> None:
    """`work(item)` for every item, on `workers` threads each with a connection of its own.

    The items are produced on the calling thread (with its connection). The first error
    stops the run: no new item is started, the running ones finish, and it is raised here.
    """
    # The calling thread's connection itself: `connection` is a proxy that each thread
    # resolves to a connection of its own.
    main = connections[DEFAULT_DB_ALIAS]
    alias = main.alias
    queue_: queue.Queue = queue.Queue(maxsize=workers)
    failures: list[BaseException] = []

    def worker() -> None:
        # A copy of the caller's connection, not a new one from the settings: a benchmark
        # or test may have pointed the alias at another database. The caller's execute
        # wrappers (statement counters, say) see the workers' statements too.
        own = main.copy()
        own.execute_wrappers = list(main.execute_wrappers)
        connections[alias] = own
        try:
            while (item := queue_.get()) is not None:
                if failures:
                    continue
                try:
                    work(item)
                except BaseException as error:  # re-raised on the calling thread
                    failures.append(error)
        finally:
            connections[alias].close()

    threads = [threading.Thread(target=worker, name=f"ledger-worker-{n}") for n in range(workers)]
    for thread in threads:
        thread.start()
    try:
        for item in items:
            if failures:
                break
            queue_.put(item)
    finally:
        for _ in threads:
            queue_.put(None)
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]


def _one_statement_batches(job: _BatchJob) -> bool:
    """Whether `job` runs its batches as `_expire_batch_postgres` (account ids in one array)."""
    return job is _EXPIRE and connection.vendor == "postgresql"


def _run_batch(job: _BatchJob, ids: list[int], due_params: list, now) -> tuple[list, int]:
    if _one_statement_batches(job):
        return _expire_batch_postgres(ids, due_params, now)
    marks = ", ".join(["%s"] * len(ids))
    sql_now = connection.ops.adapt_datetimefield_value(now)
    postgres = connection.vendor == "postgresql"
    lock = " FOR NO KEY UPDATE" if postgres else ""
    breakdown = "'{\"lots\": ' || CAST(COUNT(*) AS TEXT) || '}'"
    if postgres:
        breakdown = f"CAST({breakdown} AS jsonb)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, balance FROM loyalty_pointsaccount WHERE id IN ({marks}) ORDER BY id{lock}",
            ids,
        )
        in_debt = {account_id: -balance for account_id, balance in cursor.fetchall() if balance < 0}
        # Read the due lots again under the locks: a concurrent run may have taken them.
        cursor.execute(
            "INSERT INTO loyalty_ledgerentry (program_id, account_id, kind, points, pending_points, "
            "balance_after, pending_after, occurred_at, posted_at, source, reference, idempotency_key, "
            "fingerprint, reason, actor_label, breakdown) "
            f"SELECT a.program_id, a.id, %s, {job.entry_points}, %s, %s, '', "
            f"%s || CAST(MIN(l.id) AS TEXT), '', %s, %s, {breakdown} "
            "FROM loyalty_pointlot l JOIN loyalty_pointsaccount a ON a.id = l.account_id "
            f"WHERE {job.due} AND l.account_id IN ({marks}) "
            "GROUP BY a.id, a.program_id, a.balance, a.pending RETURNING id, account_id, points",
            [
                job.kind,
                sql_now,
                Source.JOB,
                job.key_prefix,
                job.reason,
                job.actor_label,
                *due_params,
                *ids,
            ],
        )
        created = cursor.fetchall()
        if not created:
            return [], 0
        # VALUES columns are column1..3 on both PostgreSQL and SQLite.
        values = ", ".join(["(CAST(%s AS BIGINT), CAST(%s AS BIGINT), CAST(%s AS BIGINT))"] * len(created))
        batch = (
            f"(SELECT column1 AS entry_id, column2 AS account_id, column3 AS points "
            f"FROM (VALUES {values}) AS v) AS b"
        )
        batch_params = [value for row in created for value in row]
        set_params = [False] if "%s" in job.lots_set else []
        cursor.execute(
            f"UPDATE loyalty_pointlot AS l SET {job.lots_set} FROM {batch} "
            f"WHERE l.account_id = b.account_id AND {job.due}",
            [*set_params, *batch_params, *due_params],
        )
        lots = cursor.rowcount
        cursor.execute(
            f"UPDATE loyalty_pointsaccount AS a SET {job.account_set}, updated_at = %s FROM {batch} "
            "WHERE a.id = b.account_id",
            [sql_now, *batch_params],
        )
    _settle_debts(created, in_debt, now)
    return created, lots


def _settle_debts(created: list, in_debt: dict[int, int], now) -> None:
    """After a batch, an account that was in debt pays it from its live lots (activation)."""
    for entry_id, account_id, _ in created:
        if account_id in in_debt:
            entry = LedgerEntry.objects.get(pk=entry_id)
            fresh = list(PointLot.objects.filter(account_id=account_id, pending=False, remaining__gt=0))
            _settle_debt(entry, fresh, in_debt[account_id], now)


# One statement does a whole expiry batch on PostgreSQL, after the accounts are locked:
# - `due` reads the batch's due lots once (id, account, remaining);
# - `numbered` draws one entry id per account from the entries' own sequence, so the lots
#   can name their expiry entry in the same statement that inserts it;
# - `closed` empties those lots, taking exactly the `remaining` that `due` read (were a lot
#   changed in between, which the account locks rule out, `remaining` would not reach 0 and
#   the lot_expired_is_empty check would roll the batch back), and returns what it took;
# - `totals` sums what `closed` took per account, and the entries and the account updates are
#   made from those sums, so entries, lots and balances cannot disagree.
# All parts see one snapshot, taken after the locks were granted: a concurrent run's
# committed expiry is visible, and its lots are no longer due.
_EXPIRE_BATCH_POSTGRES = """
WITH due AS MATERIALIZED (
    SELECT l.id, l.account_id, l.remaining, l.expires_at FROM loyalty_pointlot l
    WHERE l.account_id BETWEEN %(first)s AND %(last)s AND l.account_id = ANY (CAST(%(ids)s AS bigint[]))
        AND l.pending = %(pending)s AND l.remaining > 0
        AND l.expires_at IS NOT NULL AND l.expires_at <= %(due)s
),
numbered AS MATERIALIZED (
    SELECT account_id, nextval(pg_get_serial_sequence('loyalty_ledgerentry', 'id')) AS entry_id
    FROM (SELECT DISTINCT account_id FROM due) AS accounts
),
closed AS (
    UPDATE loyalty_pointlot AS l
    SET remaining = l.remaining - d.remaining, expired = l.expired + d.remaining, expiry_entry_id = n.entry_id
    FROM due AS d JOIN numbered AS n ON n.account_id = d.account_id
    WHERE l.id = d.id
    RETURNING n.entry_id, d.account_id, d.id, d.remaining, d.expires_at
),
totals AS MATERIALIZED (
    SELECT entry_id, account_id, SUM(remaining) AS points, MIN(id) AS first_lot,
        MAX(expires_at) AS latest, COUNT(*) AS lots
    FROM closed GROUP BY entry_id, account_id
),
entries AS (
    INSERT INTO loyalty_ledgerentry (id, program_id, account_id, kind, points, pending_points,
        balance_after, pending_after, occurred_at, posted_at, source, reference, idempotency_key,
        fingerprint, reason, actor_label, breakdown)
    SELECT t.entry_id, a.program_id, a.id, %(kind)s, -t.points, 0, a.balance - t.points, a.pending,
        t.latest, %(now)s, %(source)s, '', %(key_prefix)s || CAST(t.first_lot AS TEXT), '', %(reason)s,
        %(actor)s, jsonb_build_object('lots', t.lots)
    FROM totals AS t JOIN loyalty_pointsaccount AS a
        ON a.id = t.account_id AND a.id BETWEEN %(first)s AND %(last)s
    RETURNING id, account_id, points
),
accounts AS (
    UPDATE loyalty_pointsaccount AS a
    SET balance = a.balance - t.points, lifetime_expired = a.lifetime_expired + t.points, updated_at = %(now)s
    FROM totals AS t WHERE a.id = t.account_id AND a.id BETWEEN %(first)s AND %(last)s
    RETURNING a.id
)
SELECT e.id, e.account_id, e.points, t.lots, (SELECT COUNT(*) FROM accounts)
FROM entries AS e JOIN totals AS t ON t.entry_id = e.id
"""


def _expire_batch_postgres(ids: list[int], due_params: list, now) -> tuple[list, int]:
    """One batch of `expire_due_lots` on PostgreSQL: lock the accounts, then one statement.

    The same entries, lot and account changes as the portable `_run_batch`, but each due
    lot is read once and the database makes the entries from the lots it closed, instead
    of a round trip per step with the entry ids sent back as a VALUES list.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, balance FROM loyalty_pointsaccount WHERE id = ANY (CAST(%s AS bigint[])) "
            "ORDER BY id FOR NO KEY UPDATE",
            [ids],
        )
        in_debt = {account_id: -balance for account_id, balance in cursor.fetchall() if balance < 0}
        cursor.execute(
            _EXPIRE_BATCH_POSTGRES,
            {
                "ids": ids,
                # The batch's accounts are consecutive among those with due lots: the range
                # tells the planner how few lots and accounts that is, so it reads them by index
                # instead of scanning both tables once per batch (a run quadratic in their size).
                "first": ids[0],
                "last": ids[-1],
                # The conditions of `_EXPIRE.due`, named.
                "pending": due_params[0],
                "due": due_params[1],
                "kind": _EXPIRE.kind,
                "now": connection.ops.adapt_datetimefield_value(now),
                "source": Source.JOB,
                "key_prefix": _EXPIRE.key_prefix,
                "reason": _EXPIRE.reason,
                "actor": _EXPIRE.actor_label,
            },
        )
        rows = cursor.fetchall()
    created = [(entry_id, account_id, points) for entry_id, account_id, points, _, _ in rows]
    if rows and rows[0][4] != len(rows):
        # Cannot happen (one entry and one account update per account): refuse to commit if it does.
        raise LedgerError(f"Expiry batch made {len(rows)} entries but updated {rows[0][4]} accounts.")
    _settle_debts(created, in_debt, now)
    return created, sum(row[3] for row in rows)


# --- Reads the ledger owns ---------------------------------------------------


def balance_as_of(*, account: PointsAccount, moment: datetime) -> BalanceSnapshot:
    """The balance the books showed at `moment`: the last entry posted by then (an index lookup)."""
    last = (
        LedgerEntry.objects.filter(account=account, posted_at__lte=moment)
        .order_by("-posted_at", "-id")
        .values_list("id", "balance_after", "pending_after")
        .first()
    )
    if last is None:
        return BalanceSnapshot(balance=0, pending=0, last_entry_id=None)
    return BalanceSnapshot(balance=last[1], pending=last[2], last_entry_id=last[0])


def reconcile(*, program: Program | None = None) -> list[Discrepancy]:
    """Check every account against its entries and lots, in a handful of set-based queries."""
    program_filter = "WHERE a.program_id = %s" if program else ""
    params = [program.pk] if program else []
    checks = {
        # balance and pending are the sums of the entries; the last entry agrees with the row.
        "balance = sum(entries)": (
            "a.balance",
            "COALESCE(e.points, 0)",
            "LEFT JOIN (SELECT account_id, SUM(points) AS points FROM loyalty_ledgerentry "
            "GROUP BY account_id) e ON e.account_id = a.id",
        ),
        "pending = sum(entries)": (
            "a.pending",
            "COALESCE(e.pending, 0)",
            "LEFT JOIN (SELECT account_id, SUM(pending_points) AS pending FROM loyalty_ledgerentry "
            "GROUP BY account_id) e ON e.account_id = a.id",
        ),
        "balance = last balance_after": (
            "a.balance",
            "COALESCE(e.balance_after, 0)",
            "LEFT JOIN loyalty_ledgerentry e ON e.id = (SELECT MAX(id) FROM loyalty_ledgerentry x "
            "WHERE x.account_id = a.id)",
        ),
        # The spendable balance is backed by live lots (nothing when in debt).
        "live lots = max(balance, 0)": (
            "CASE WHEN a.balance > 0 THEN a.balance ELSE 0 END",
            "COALESCE(l.live, 0)",
            "LEFT JOIN (SELECT account_id, SUM(remaining) AS live FROM loyalty_pointlot WHERE pending = %s "
            "GROUP BY account_id) l ON l.account_id = a.id",
        ),
        "pending lots = pending": (
            "a.pending",
            "COALESCE(l.pend, 0)",
            "LEFT JOIN (SELECT account_id, SUM(remaining) AS pend FROM loyalty_pointlot WHERE pending = %s "
            "GROUP BY account_id) l ON l.account_id = a.id",
        ),
        "lifetime_expired = sum(expire entries)": (
            "a.lifetime_expired",
            "COALESCE(e.expired, 0)",
            "LEFT JOIN (SELECT account_id, -SUM(points) AS expired FROM loyalty_ledgerentry WHERE kind = %s "
            "GROUP BY account_id) e ON e.account_id = a.id",
        ),
    }
    extra = {
        "live lots = max(balance, 0)": [False],
        "pending lots = pending": [True],
        "lifetime_expired = sum(expire entries)": [Kind.EXPIRE],
    }
    found: list[Discrepancy] = []
    with connection.cursor() as cursor:
        for name, (expected, actual, join) in checks.items():
            cursor.execute(
                f"SELECT a.id, {expected}, {actual} FROM loyalty_pointsaccount a {join} {program_filter}"
                f"{' AND' if program else ' WHERE'} {expected} <> {actual}",
                [*extra.get(name, []), *params],
            )
            found += [Discrepancy(row[0], name, row[1], row[2]) for row in cursor.fetchall()]
        # Every lot's remaining points are its original less what was taken and what expired.
        lot_filter = "AND acc.program_id = %s" if program else ""
        cursor.execute(
            "SELECT l.account_id, l.original - COALESCE(s.taken, 0) - l.expired, l.remaining "
            "FROM loyalty_pointlot l JOIN loyalty_pointsaccount acc ON acc.id = l.account_id "
            "LEFT JOIN (SELECT lot_id, SUM(points) AS taken FROM loyalty_pointallocation GROUP BY lot_id) s "
            "ON s.lot_id = l.id "
            f"WHERE l.remaining <> l.original - COALESCE(s.taken, 0) - l.expired {lot_filter}",
            params,
        )
        found += [
            Discrepancy(row[0], "lot remaining = original - allocated - expired", row[1], row[2])
            for row in cursor.fetchall()
        ]
        # expiry_entry has no database foreign key (it made expiry slow): check it here. An
        # expired lot names an expiry entry of its own account; `expected` is the lot, `actual`
        # the entry it names.
        cursor.execute(
            "SELECT l.account_id, l.id, l.expiry_entry_id "
            "FROM loyalty_pointlot l JOIN loyalty_pointsaccount acc ON acc.id = l.account_id "
            "LEFT JOIN loyalty_ledgerentry e ON e.id = l.expiry_entry_id AND e.account_id = l.account_id "
            f"AND e.kind = %s WHERE l.expiry_entry_id IS NOT NULL AND e.id IS NULL {lot_filter}",
            [Kind.EXPIRE, *params],
        )
        found += [
            Discrepancy(row[0], "lot expiry_entry = an expiry entry of its account", row[1], row[2])
            for row in cursor.fetchall()
        ]
    return found
