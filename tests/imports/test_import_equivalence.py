"""An import posts what `activity_post` would post row by row: the set-based chunk path changes nothing.

Two twin programs get the same rules, tiers, promotions, challenge, streak, members and webhook
endpoint. One imports a CSV; the other gets the same rows through `activity_post` (and
`purchase_return`) one at a time, in file order. Their ledgers, lots, accounts, tiers, budgets,
unpaid records, returns, notifications and webhooks must then be the same, row for row.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from loyalty import ledger
from loyalty.earning import activity_post, purchase_return
from loyalty.errors import ApplicationError
from loyalty.imports.engine import import_create, import_run
from loyalty.imports.transactions import TransactionImporter
from loyalty.models import (
    LedgerEntry,
    Member,
    PointLot,
    Program,
    PromotionUsage,
    PurchaseReturn,
    TierChange,
    UnpaidActivity,
)
from loyalty.notifications.models import Message, WebhookDelivery, WebhookEndpoint
from loyalty.services import member_create
from tests.loyalty.factories import (
    ChallengeFactory,
    EarningRuleFactory,
    PromotionFactory,
    StreakFactory,
    TierFactory,
)

pytestmark = pytest.mark.django_db

HEADER = "membership_number,type,reference,occurred_at,amount,original_reference\n"
FILENAME = "twin.csv"
MEMBERS = 6  # the last one is suspended


def _twin(slug: str, start) -> tuple[Program, list[Member]]:
    program = Program.objects.create(
        name=slug, slug=slug, currency="EUR", time_zone="Europe/Paris", pending_days=14, tier_window_days=365
    )
    EarningRuleFactory(program=program, cap_per_day=150, min_amount=Decimal("5"))
    EarningRuleFactory.fixed_activity(program=program, code="survey", points=25, cap_per_month=100)
    EarningRuleFactory.fixed_activity(program=program, code="review", points=5)
    silver = TierFactory(program=program, name="Silver", rank=1, threshold=300, multiplier=Decimal("1.5"))
    TierFactory(program=program, name="Gold", rank=2, threshold=100_000, multiplier=Decimal("2"))
    window = {"starts_at": start - timedelta(days=5), "ends_at": start + timedelta(days=60)}
    PromotionFactory(program=program, name="Budgeted", bonus_points=10, budget_points=95, **window)
    PromotionFactory(
        program=program,
        name="Silver double",
        kind="multiplier",
        multiplier=Decimal("2"),
        bonus_points=0,
        max_uses=3,
        tiers=[silver],
        activity_codes=["purchase"],
        **window,
    )
    ChallengeFactory(
        program=program, name="Three surveys", activity_code="survey", required_count=3, **window
    )
    # Completed by members 0 to 3 part-way through the file; their later purchases post set-based.
    ChallengeFactory(
        program=program, name="Six purchases", activity_code="purchase", required_count=6, **window
    )
    StreakFactory(program=program, name="Review streak", activity_code="review", length=3, bonus_points=50)
    WebhookEndpoint.objects.create(program=program, url="https://example.com/hook", events=["points_posted"])
    members = [
        member_create(program=program, first_name="M", last_name=str(n), email=f"m{n}-{slug}@example.com")
        for n in range(MEMBERS)
    ]
    Member.objects.filter(pk=members[-1].pk).update(status=Member.Status.SUSPENDED)
    return program, members


def _rows(start) -> list[tuple]:
    """(member index, type, reference, occurred_at, amount, original_reference), in file order."""
    rows = []

    def add(member, kind, reference, at, amount=None, original=""):
        rows.append((member, kind, reference, at, amount, original))

    for i in range(24):  # four members, a few purchases a day
        add(
            i % 4, "purchase", f"P-{i}", start + timedelta(days=i // 6, hours=i % 6), Decimal(20 + i * 7 % 50)
        )
        if i in (1, 6):  # between set-based rows, one posted on its own (a challenge runs) spends budget
            add(i % 4, "survey", f"SB-{i}", start + timedelta(days=i // 6, hours=7))
    for i in range(6):  # member 0 runs into the daily cap part-way through the chunk
        add(0, "purchase", f"CAP-{i}", start + timedelta(days=2, hours=12 + i), Decimal("40"))
    for i in range(4):  # member 2 crosses into Silver, then earns the tier boost and its promotion
        add(2, "purchase", f"BIG-{i}", start + timedelta(days=3 + i, hours=20), Decimal("200"))
    for i in range(4):  # member 1 completes the survey challenge; the monthly cap then pays nothing
        add(1, "survey", f"S-{i}", start + timedelta(days=i, hours=9))
    for i in range(3):  # member 3 reviews three days running: a streak
        add(3, "review", f"R-{i}", start + timedelta(days=i, hours=8))
    add(0, "purchase", "P-1", start + timedelta(hours=1), Decimal(27))  # the same row again: skipped
    add(1, "purchase", "P-2", start + timedelta(hours=2), Decimal("99"))  # same key, other values: refused
    add(0, "purchase", "PRE-SAME", start + timedelta(hours=3), Decimal("30"))  # posted before: a replay
    add(0, "purchase", "PRE-OTHER", start + timedelta(hours=3), Decimal("31"))  # posted before otherwise
    add(0, "return", "RT-1", start + timedelta(days=1), Decimal("10"), "P-0")
    add(1, "purchase", "SMALL-1", start + timedelta(hours=4), Decimal("2"))  # below the minimum: unpaid
    add(4, "purchase", "SUSP-1", start + timedelta(hours=5), Decimal("30"))  # suspended member
    add(2, "dance", "D-1", start + timedelta(hours=6))  # no such activity
    # Member 4 reaches Silver only with the points of a row posted on its own (a survey).
    add(4, "purchase", "T-0", start + timedelta(days=8, hours=10), Decimal("130"))
    add(4, "survey", "T-S", start + timedelta(days=8, hours=11))
    add(4, "purchase", "T-1", start + timedelta(days=9, hours=10), Decimal("160"))
    for i in range(6):  # more after the refusals, members interleaved
        add(i % 4, "purchase", f"Q-{i}", start + timedelta(days=5, hours=i), Decimal(15 + i))
    return rows


def _pre_post(members, start):
    actor = ledger.Actor(label="api:pos")
    for reference, amount in (("PRE-SAME", "30"), ("PRE-OTHER", "35")):
        activity_post(
            member=members[0],
            code="purchase",
            reference=reference,
            amount=amount,
            occurred_at=start + timedelta(hours=3),
            source=LedgerEntry.Source.API,
            actor=actor,
        )


def _csv(rows, members) -> bytes:
    lines = [
        ",".join([members[m].membership_number, kind, ref, at.isoformat(), str(amount or ""), orig])
        for m, kind, ref, at, amount, orig in rows
    ]
    return (HEADER + "\n".join(lines) + "\n").encode()


def _one_by_one(rows, members) -> set[int]:
    """Post each row through the services, in file order; the lines they refuse."""
    actor = ledger.Actor(label=f"import:{FILENAME}")
    refused = set()
    for line, (m, kind, ref, at, amount, orig) in enumerate(rows, start=2):
        member = Member.objects.select_related("program", "tier", "account").get(pk=members[m].pk)
        try:
            if kind == "return":
                purchase_return(
                    member=member,
                    original_reference=orig,
                    amount=amount,
                    reference=ref,
                    source=LedgerEntry.Source.IMPORT,
                    actor=actor,
                )
            else:
                activity_post(
                    member=member,
                    code=kind,
                    reference=ref,
                    amount=amount,
                    occurred_at=at,
                    source=LedgerEntry.Source.IMPORT,
                    actor=actor,
                )
        except ApplicationError:
            refused.add(line)
    return refused


def _snapshot(program: Program, members: list[Member]) -> dict:
    index = {member.pk: n for n, member in enumerate(members)}
    numbers = {member.membership_number: n for n, member in enumerate(members)}

    def plain(value):
        """Breakdowns and payloads without the twin's own ids."""
        if isinstance(value, dict):
            return {
                k: numbers.get(v, v) if k == "member" else plain(v)
                for k, v in value.items()
                if k not in ("rule_id", "promotion_id", "entry_id")
            }
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    def key(text: str) -> str:
        return re.sub(r"\d+", "#", text) if text.startswith(("challenge:", "streak:")) else text

    lots = {lot.entry_id: lot for lot in PointLot.objects.filter(account__program=program)}
    entries = []
    for e in LedgerEntry.objects.filter(program=program).select_related("account").order_by("id"):
        lot = lots.get(e.pk)
        entries.append(
            (
                index[e.account.member_id],
                e.kind,
                e.points,
                e.pending_points,
                e.balance_after,
                e.pending_after,
                None if e.kind == "reverse" else e.occurred_at,  # a reversal occurs when it is posted
                e.source,
                e.reference,
                key(e.idempotency_key),
                e.reason,
                e.actor_label,
                plain(e.breakdown),
                lot and (lot.original, lot.remaining, lot.pending, lot.available_from, lot.expires_at),
            )
        )
    accounts = {
        index[member.pk]: (
            member.account.balance,
            member.account.pending,
            member.account.lifetime_earned,
            member.account.lifetime_redeemed,
            member.account.lifetime_expired,
            member.tier.name if member.tier else None,
        )
        for member in Member.objects.filter(program=program).select_related("account", "tier")
    }
    return {
        "entries": entries,
        "accounts": accounts,
        "tier changes": sorted(
            (
                index[c.member_id],
                c.from_tier and c.from_tier.name,
                c.to_tier.name,
                c.qualifying_points,
                c.reason,
            )
            for c in TierChange.objects.filter(member__program=program).select_related("from_tier", "to_tier")
        ),
        "budgets": sorted(
            (u.promotion.name, u.points_awarded, u.uses)
            for u in PromotionUsage.objects.filter(promotion__program=program).select_related("promotion")
        ),
        "unpaid": [
            (
                index[u.member_id],
                u.idempotency_key,
                u.activity_code,
                u.reference,
                u.occurred_at,
                plain(u.breakdown),
            )
            for u in UnpaidActivity.objects.filter(program=program).order_by("id")
        ],
        "returns": [
            (r.reference, r.returned_amount, r.points, r.shortfall, r.expired, r.note)
            for r in PurchaseReturn.objects.filter(program=program).order_by("id")
        ],
        "messages": sorted(
            (index[m.member_id], m.kind, m.status) for m in Message.objects.filter(program=program)
        ),
        "webhooks": sorted(
            (d.event, str(plain(d.payload["data"]))) for d in WebhookDelivery.objects.filter(program=program)
        ),
    }


@pytest.mark.parametrize("chunk_size", [500, 7])
def test_an_import_posts_what_activity_post_posts_row_by_row(
    chunk_size, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(TransactionImporter, "chunk_size", chunk_size)
    local = timezone.localtime(timezone.now() - timedelta(days=20))
    start = local.replace(hour=10, minute=0, second=0, microsecond=0)
    imported, imported_members = _twin("imported", start)
    posted, posted_members = _twin("posted", start)
    rows = _rows(start)
    with django_capture_on_commit_callbacks(execute=True):
        _pre_post(imported_members, start)
        _pre_post(posted_members, start)
    with django_capture_on_commit_callbacks(execute=True):
        batch = import_run(
            batch_id=import_create(
                program=imported, kind="transactions", filename=FILENAME, content=_csv(rows, imported_members)
            ).pk
        )
    with django_capture_on_commit_callbacks(execute=True):
        refused = _one_by_one(rows, posted_members)

    assert {error.line for error in batch.errors.all()} == refused
    assert refused  # the file has bad rows, and they are the same ones
    mine, theirs = _snapshot(imported, imported_members), _snapshot(posted, posted_members)
    for part in mine:
        assert mine[part] == theirs[part], part
    # What the rows were meant to exercise did happen.
    bonuses = [entry[9].split(":")[0] for entry in mine["entries"] if entry[1] == "bonus"]
    assert sorted(bonuses) == ["challenge"] * 5 + ["streak"]  # three surveys once, six purchases 4 times
    assert {2, 4} <= {change[0] for change in mine["tier changes"]}
    assert mine["unpaid"] and mine["returns"]
    assert any("daily cap" in str(entry[12].get("note")) for entry in mine["entries"])
    assert ("Budgeted", 95, 10) in mine["budgets"]  # nine times 10, then the 5 left
    assert ledger.reconcile(program=imported) == [] and ledger.reconcile(program=posted) == []

    # A re-import changes nothing.
    with django_capture_on_commit_callbacks(execute=True):
        again = import_run(
            batch_id=import_create(
                program=imported,
                kind="transactions",
                filename="again.csv",
                content=_csv(rows, imported_members),
            ).pk
        )
    assert again.landed == 0
    assert _snapshot(imported, imported_members) == mine
