"""Redemptions: requesting a reward debits at once and takes stock; rejecting or cancelling gives both back.

Every test runs on a fixed clock (`now=`), and afterwards the whole ledger must
still balance (`ledger_helpers.ledger_problems`, which runs `ledger.reconcile()`).
The racing tests need PostgreSQL's row locks and commit for real.
"""

from __future__ import annotations

import re
import threading

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from loyalty import ledger, notifications
from loyalty.errors import ApplicationError
from loyalty.ledger import Actor, IdempotencyConflict, InsufficientPoints
from loyalty.models import LedgerEntry, Member, PointLot, PointsAccount, Redemption, Reward, Tier
from loyalty.redemptions import (
    IllegalTransition,
    redemption_approve,
    redemption_cancel,
    redemption_fulfil,
    redemption_reject,
    redemption_request,
)
from loyalty.services import member_create
from tests.loyalty.ledger_helpers import T0, assert_ledger_consistent, days, earn, live_lots, snapshot

Kind = LedgerEntry.Kind
Source = LedgerEntry.Source
Status = Redemption.Status
NOW = T0 + days(1)
LATER = T0 + days(2)
VOUCHER = re.compile(r"^[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}$")


@pytest.fixture(autouse=True)
def ledger_stays_consistent(db):
    """Whatever a scenario did, the books must still balance afterwards."""
    yield
    assert ledger.reconcile() == []
    assert_ledger_consistent()


@pytest.fixture(autouse=True)
def sent(monkeypatch):
    """Notifications handed over for delivery (after commit): (member id, kind, dedupe key, context)."""
    sent = []
    monkeypatch.setattr(
        notifications,
        "_handlers",
        [lambda *, member, kind, context, dedupe_key: sent.append((member.pk, kind, dedupe_key, context))],
    )
    return sent


@pytest.fixture
def agent(agent_a):
    return Actor.of_user(agent_a)


@pytest.fixture
def account(member_a):
    """Member A holds two lots: 200 points expiring first, then 300 that never expire."""
    earn(member_a.account, 200, expires_at=T0 + days(200))
    earn(member_a.account, 300, expires_at=None)
    return member_a.account


@pytest.fixture
def voucher(program_a):
    return Reward.objects.create(program=program_a, name="Cinema ticket", cost_points=300, stock=5)


@pytest.fixture
def parcel(program_a):
    return Reward.objects.create(
        program=program_a,
        name="Headphones",
        cost_points=250,
        stock=2,
        fulfilment=Reward.Fulfilment.SHIPMENT,
    )


def balance(member: Member) -> int:
    return PointsAccount.objects.get(member=member).balance


def stock(reward: Reward) -> int | None:
    return Reward.objects.get(pk=reward.pk).stock


def request(member, reward, agent, key="r-1", **kwargs):
    kwargs.setdefault("channel", Source.AGENT)
    kwargs.setdefault("now", NOW)
    return redemption_request(member=member, reward=reward, idempotency_key=key, actor=agent, **kwargs)


def fresh(redemption: Redemption) -> Redemption:
    return Redemption.objects.get(pk=redemption.pk)


def state():
    """Everything a refused call must leave as it was."""
    redemptions = tuple(
        Redemption.objects.order_by("pk").values_list(
            "pk", "status", "refund_entry", "voucher_code", "shipping_note", "decision_reason", "updated_at"
        )
    )
    return (
        snapshot(),
        redemptions,
        Redemption.history.count(),
        tuple(Reward.objects.order_by("pk").values_list("pk", "stock")),
    )


# --- Requesting ------------------------------------------------------------


def test_a_request_debits_the_points_at_once_and_takes_one_item_from_stock(member_a, account, voucher, agent):
    result = request(member_a, voucher, agent)

    redemption = fresh(result.redemption)
    assert not result.replayed
    assert redemption.status == Status.REQUESTED
    assert redemption.points == 300
    assert redemption.member == member_a
    assert redemption.channel == Source.AGENT
    assert redemption.requested_by == agent.user
    assert (redemption.created_at, redemption.updated_at) == (NOW, NOW)
    assert balance(member_a) == 200
    assert stock(voucher) == 4
    entry = redemption.debit_entry
    assert (entry.kind, entry.points, entry.source) == (Kind.REDEEM, -300, Source.AGENT)
    assert "Cinema ticket" in entry.reason
    assert entry.actor == agent.user


def test_a_request_spends_the_soonest_expiring_lot_first(member_a, account, voucher, agent):
    soon, never = sorted(live_lots(account))

    request(member_a, voucher, agent)

    assert live_lots(account) == {never: 200}
    assert PointLot.objects.get(pk=soon).remaining == 0


def test_a_request_for_an_unlimited_reward_leaves_the_stock_unlimited(member_a, account, program_a, agent):
    unlimited = Reward.objects.create(program=program_a, name="Donation", cost_points=100, stock=None)

    request(member_a, unlimited, agent, key="a")
    request(member_a, unlimited, agent, key="b")

    assert stock(unlimited) is None
    assert balance(member_a) == 300


def test_the_last_item_in_stock_can_be_redeemed_and_then_there_is_none(member_a, account, voucher, agent):
    Reward.objects.filter(pk=voucher.pk).update(stock=1)

    request(member_a, voucher, agent)

    assert stock(voucher) == 0


def test_the_history_of_a_request_names_the_agent(member_a, account, voucher, agent):
    redemption = request(member_a, voucher, agent).redemption

    record = redemption.history.get()
    assert record.history_user == agent.user
    assert record.status == Status.REQUESTED


def test_a_job_can_request_and_nobody_is_named_as_the_requester(member_a, account, voucher):
    redemption = request(member_a, voucher, Actor.job("api-import"), channel=Source.API).redemption

    assert redemption.requested_by is None
    assert redemption.history.get().history_user is None
    assert redemption.debit_entry.actor_label == "job:api-import"


def test_the_member_is_told_a_request_was_received_once_it_commits(
    member_a, account, voucher, agent, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        redemption = request(member_a, voucher, agent).redemption

    assert [(m, k, d) for m, k, d, _ in sent] == [
        (member_a.pk, "redemption_status", f"redemption:{redemption.pk}:requested")
    ]
    assert sent[0][3]["reward"] == "Cinema ticket"


# --- Idempotency -----------------------------------------------------------


def test_a_double_submitted_request_debits_once_and_returns_the_original(member_a, account, voucher, agent):
    first = request(member_a, voucher, agent)
    before = state()

    second = request(member_a, voucher, agent)

    assert second.replayed
    assert second.redemption.pk == first.redemption.pk
    assert state() == before
    assert balance(member_a) == 200
    assert stock(voucher) == 4
    assert LedgerEntry.objects.filter(kind=Kind.REDEEM).count() == 1


def test_a_replayed_request_returns_the_original_even_when_the_rules_would_now_refuse_it(
    member_a, account, voucher, agent
):
    first = request(member_a, voucher, agent)
    Reward.objects.filter(pk=voucher.pk).update(stock=0, is_active=False)
    redemption_cancel(redemption=first.redemption, actor=agent, reason="Changed my mind", now=LATER)

    again = request(member_a, voucher, agent, now=LATER)

    assert again.replayed
    assert again.redemption.pk == first.redemption.pk
    assert again.redemption.status == Status.CANCELLED


@pytest.mark.parametrize("change", ["member", "reward"])
def test_the_same_key_for_another_member_or_reward_is_a_conflict(
    change, member_a, member_b, account, voucher, program_a, agent
):
    earn(member_b.account, 500)
    other_reward = Reward.objects.create(program=program_a, name="Mug", cost_points=50)
    request(member_a, voucher, agent, key="shared")
    before = state()

    with pytest.raises(IdempotencyConflict) as error:
        if change == "member":
            request(member_b, voucher, agent, key="shared")
        else:
            request(member_a, other_reward, agent, key="shared")

    assert error.value.code == "idempotency_conflict"
    assert error.value.field == "idempotency_key"
    assert state() == before


def test_the_same_key_in_another_program_is_independent(
    member_a, account, voucher, member_of_b, program_b, agent
):
    earn(member_of_b.account, 100)
    reward_b = Reward.objects.create(program=program_b, name="Coffee", cost_points=100)
    request(member_a, voucher, agent, key="same")

    result = request(member_of_b, reward_b, Actor.job("tests"), key="same")

    assert not result.replayed
    assert balance(member_of_b) == 0


def test_a_key_refused_by_a_business_rule_is_not_burnt(member_a, voucher, agent):
    earn(member_a.account, 100)
    with pytest.raises(InsufficientPoints):
        request(member_a, voucher, agent, key="retry")
    earn(member_a.account, 200)

    result = request(member_a, voucher, agent, key="retry")

    assert not result.replayed
    assert balance(member_a) == 0


@pytest.mark.parametrize(
    ("kwargs", "code", "field"),
    [
        ({"key": ""}, "idempotency_key_required", "idempotency_key"),
        ({"key": "   "}, "idempotency_key_required", "idempotency_key"),
        ({"key": "k" * 190}, "invalid", "idempotency_key"),
        ({"channel": "carrier-pigeon"}, "invalid", "channel"),
    ],
)
def test_a_request_without_a_usable_key_or_channel_is_refused(
    member_a, account, voucher, agent, kwargs, code, field
):
    before = state()

    with pytest.raises(ApplicationError) as error:
        request(member_a, voucher, agent, **kwargs)

    assert (error.value.code, error.value.field) == (code, field)
    assert state() == before


def test_the_longest_key_allowed_fits_the_ledger(member_a, account, voucher, agent):
    result = request(member_a, voucher, agent, key="k" * 189)

    assert result.redemption.debit_entry.idempotency_key == "redemption:" + "k" * 189


# --- Refusals --------------------------------------------------------------


@pytest.fixture
def tiers(program_a):
    silver = Tier.objects.create(program=program_a, name="Silver", rank=1, threshold=0)
    gold = Tier.objects.create(program=program_a, name="Gold", rank=2, threshold=1000)
    platinum = Tier.objects.create(program=program_a, name="Platinum", rank=3, threshold=5000)
    return {"silver": silver, "gold": gold, "platinum": platinum}


def _out_of_stock(member, reward, **_):
    Reward.objects.filter(pk=reward.pk).update(stock=0)


def _gold_only(member, reward, tiers, **_):
    member.tier = tiers["silver"]
    member.save()
    Reward.objects.filter(pk=reward.pk).update(min_tier=tiers["gold"])


def _gold_only_and_no_tier(member, reward, tiers, **_):
    Reward.objects.filter(pk=reward.pk).update(min_tier=tiers["gold"])


def _status(value):
    def suspend(member, reward, **_):
        Member.objects.filter(pk=member.pk).update(status=value)

    return suspend


def _reward(**fields):
    def change(member, reward, **_):
        Reward.objects.filter(pk=reward.pk).update(**fields)

    return change


def _too_expensive(member, reward, **_):
    Reward.objects.filter(pk=reward.pk).update(cost_points=501)


def _of_program_b(member, reward, program_b, **_):
    Reward.objects.filter(pk=reward.pk).update(program=program_b)


@pytest.mark.parametrize(
    ("arrange", "code"),
    [
        (_out_of_stock, "out_of_stock"),
        (_gold_only, "tier_too_low"),
        (_gold_only_and_no_tier, "tier_too_low"),
        (_status(Member.Status.SUSPENDED), "member_inactive"),
        (_status(Member.Status.CLOSED), "member_inactive"),
        (_too_expensive, "insufficient_points"),
        (_reward(is_active=False), "reward_unavailable"),
        (_reward(active_from=NOW + days(1)), "reward_unavailable"),
        (_reward(active_until=NOW), "reward_unavailable"),
        (_of_program_b, "reward_unavailable"),
    ],
    ids=[
        "out-of-stock",
        "tier-below",
        "no-tier",
        "suspended",
        "closed",
        "insufficient",
        "inactive-reward",
        "not-yet",
        "ended",
        "other-program",
    ],
)
def test_a_refused_request_gives_its_code_and_changes_nothing(
    arrange, code, member_a, account, voucher, agent, tiers, program_b
):
    arrange(member=member_a, reward=voucher, tiers=tiers, program_b=program_b)
    before = state()

    with pytest.raises(ApplicationError) as error:
        request(member_a, voucher, agent)

    assert error.value.code == code
    assert error.value.message
    assert state() == before
    assert balance(member_a) == 500
    assert not Redemption.objects.exists()


def test_insufficient_points_says_how_many_are_available(member_a, voucher, agent):
    earn(member_a.account, 120)

    with pytest.raises(InsufficientPoints) as error:
        request(member_a, voucher, agent)

    assert error.value.extra == {"available": 120, "shortfall": 180}


def test_a_refusal_for_points_puts_back_the_item_it_had_taken(member_a, voucher, agent):
    Reward.objects.filter(pk=voucher.pk).update(stock=1)
    earn(member_a.account, 299)

    with pytest.raises(InsufficientPoints):
        request(member_a, voucher, agent)

    assert stock(voucher) == 1


def test_pending_points_cannot_pay_for_a_reward(member_a, program_a, voucher, agent):
    program_a.pending_days = 14
    program_a.save()
    earn(member_a.account, 1000)

    with pytest.raises(InsufficientPoints):
        request(member_a, voucher, agent)

    assert stock(voucher) == 5


@pytest.mark.parametrize("tier", ["gold", "platinum"])
def test_a_member_at_the_required_tier_or_above_may_redeem(tier, member_a, account, voucher, agent, tiers):
    Reward.objects.filter(pk=voucher.pk).update(min_tier=tiers["gold"])
    member_a.tier = tiers[tier]
    member_a.save()

    result = request(member_a, voucher, agent)

    assert result.redemption.status == Status.REQUESTED


def test_the_tier_refusal_names_the_tier_needed(member_a, account, voucher, agent, tiers):
    _gold_only(member_a, voucher, tiers)

    with pytest.raises(ApplicationError) as error:
        request(member_a, voucher, agent)

    assert "Gold" in error.value.message
    assert error.value.extra == {"required_tier": "Gold", "member_tier": "Silver"}


def test_a_reward_can_be_redeemed_from_the_first_moment_of_its_window(member_a, account, voucher, agent):
    Reward.objects.filter(pk=voucher.pk).update(active_from=NOW, active_until=NOW + days(1))

    assert request(member_a, voucher, agent).redemption.status == Status.REQUESTED


def test_the_window_refusal_gives_the_date_in_the_program_time_zone(member_a, account, voucher, agent):
    # 23:30 UTC on 4 March is already 5 March in Paris.
    Reward.objects.filter(pk=voucher.pk).update(active_from=T0.replace(day=4, hour=23, minute=30))

    with pytest.raises(ApplicationError) as error:
        request(member_a, voucher, agent)

    assert "2025-03-05 00:30" in error.value.message


# --- Approving and fulfilling ----------------------------------------------


@pytest.fixture
def requested(member_a, account, voucher, agent):
    return request(member_a, voucher, agent).redemption


@pytest.fixture
def shipment(member_a, account, parcel, agent):
    return request(member_a, parcel, agent, key="ship").redemption


def test_an_approved_voucher_is_fulfilled_with_a_readable_code(requested, agent, supervisor):
    redemption_approve(redemption=requested, actor=agent, now=LATER)

    result = redemption_fulfil(redemption=requested, actor=Actor.of_user(supervisor), now=LATER)

    redemption = fresh(result.redemption)
    assert redemption.status == Status.FULFILLED
    assert VOUCHER.match(redemption.voucher_code), redemption.voucher_code
    assert redemption.updated_at == LATER
    assert redemption.history.first().history_user == supervisor


def test_voucher_codes_avoid_ambiguous_characters_and_differ(member_a, program_a, agent):
    earn(member_a.account, 2000)
    reward = Reward.objects.create(program=program_a, name="Code", cost_points=10)
    codes = set()
    for n in range(40):
        redemption = request(member_a, reward, agent, key=f"v{n}").redemption
        redemption_approve(redemption=redemption, actor=agent)
        codes.add(redemption_fulfil(redemption=redemption, actor=agent).redemption.voucher_code)

    assert len(codes) == 40
    assert not set("".join(codes)) & set("01OIL")


def test_a_shipment_needs_a_shipping_note(shipment, agent):
    redemption_approve(redemption=shipment, actor=agent, now=LATER)
    before = state()

    with pytest.raises(ApplicationError) as error:
        redemption_fulfil(redemption=shipment, actor=agent, shipping_note="   ", now=LATER)

    assert (error.value.code, error.value.field) == ("shipping_note_required", "shipping_note")
    assert state() == before


def test_a_shipment_is_fulfilled_with_its_note_and_no_voucher(shipment, agent):
    redemption_approve(redemption=shipment, actor=agent, now=LATER)

    redemption_fulfil(redemption=shipment, actor=agent, shipping_note=" DHL 123456789 ", now=LATER)

    redemption = fresh(shipment)
    assert (redemption.status, redemption.shipping_note, redemption.voucher_code) == (
        Status.FULFILLED,
        "DHL 123456789",
        "",
    )


def test_approving_twice_acts_once(requested, agent):
    first = redemption_approve(redemption=requested, actor=agent, now=LATER)
    before = state()

    second = redemption_approve(redemption=requested, actor=agent, now=LATER + days(1))

    assert (first.replayed, second.replayed) == (False, True)
    assert second.redemption.status == Status.APPROVED
    assert state() == before


def test_fulfilling_twice_keeps_the_first_voucher_code(requested, agent):
    redemption_approve(redemption=requested, actor=agent, now=LATER)
    code = redemption_fulfil(redemption=requested, actor=agent, now=LATER).redemption.voucher_code
    before = state()

    again = redemption_fulfil(redemption=requested, actor=agent, now=LATER)

    assert again.replayed
    assert again.redemption.voucher_code == code
    assert state() == before


def test_fulfilment_keeps_the_points_spent(requested, member_a, voucher, agent):
    redemption_approve(redemption=requested, actor=agent, now=LATER)
    redemption_fulfil(redemption=requested, actor=agent, now=LATER)

    assert balance(member_a) == 200
    assert stock(voucher) == 4


def test_the_member_is_told_of_each_status_once(
    requested, member_a, agent, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        redemption_approve(redemption=requested, actor=agent, now=LATER)
        redemption_approve(redemption=requested, actor=agent, now=LATER)
        code = redemption_fulfil(redemption=requested, actor=agent, now=LATER).redemption.voucher_code

    keys = [d for _, _, d, _ in sent if not d.endswith(":requested")]
    assert keys == [f"redemption:{requested.pk}:approved", f"redemption:{requested.pk}:fulfilled"]
    assert sent[-1][3]["voucher_code"] == code


# --- Rejecting and cancelling ----------------------------------------------


def test_a_cancelled_redemption_restores_the_balance_the_same_lots_and_the_stock(
    member_a, account, voucher, agent
):
    lots_before = live_lots(account)
    redemption = request(member_a, voucher, agent).redemption
    assert live_lots(account) != lots_before

    result = redemption_cancel(
        redemption=redemption, actor=agent, reason="Member changed their mind", now=LATER
    )

    cancelled = fresh(result.redemption)
    assert cancelled.status == Status.CANCELLED
    assert cancelled.decision_reason == "Member changed their mind"
    assert balance(member_a) == 500
    assert live_lots(account) == lots_before
    assert stock(voucher) == 5
    refund = cancelled.refund_entry
    assert (refund.kind, refund.points, refund.reverses_id) == (Kind.REFUND, 300, cancelled.debit_entry_id)
    assert refund.subject == cancelled
    assert refund.actor == agent.user
    assert "Member changed their mind" in refund.reason


@pytest.mark.parametrize("approve_first", [False, True], ids=["requested", "approved"])
def test_a_rejected_redemption_refunds_the_points_and_the_stock(
    approve_first, requested, member_a, account, voucher, agent, supervisor
):
    if approve_first:
        redemption_approve(redemption=requested, actor=agent, now=LATER)

    result = redemption_reject(
        redemption=requested, actor=Actor.of_user(supervisor), reason="Suspected fraud", now=LATER
    )

    rejected = fresh(result.redemption)
    assert rejected.status == Status.REJECTED
    assert rejected.refund_entry.points == 300
    assert balance(member_a) == 500
    assert stock(voucher) == 5
    # Back into the lots the points came from, which are now whole again.
    assert live_lots(account) == dict(PointLot.objects.filter(account=account).values_list("pk", "original"))
    assert rejected.history.first().history_user == supervisor


def test_cancelling_restores_nothing_to_an_unlimited_reward(member_a, account, program_a, agent):
    unlimited = Reward.objects.create(program=program_a, name="Donation", cost_points=100)
    redemption = request(member_a, unlimited, agent).redemption

    redemption_cancel(redemption=redemption, actor=agent, reason="Duplicate", now=LATER)

    assert stock(unlimited) is None
    assert balance(member_a) == 500


def test_cancelling_an_already_cancelled_redemption_acts_once(requested, member_a, voucher, agent):
    redemption_cancel(redemption=requested, actor=agent, reason="Changed my mind", now=LATER)
    before = state()

    again = redemption_cancel(redemption=requested, actor=agent, reason="Changed my mind", now=LATER)

    assert again.replayed
    assert again.redemption.status == Status.CANCELLED
    assert state() == before
    assert balance(member_a) == 500
    assert stock(voucher) == 5
    assert LedgerEntry.objects.filter(kind=Kind.REFUND).count() == 1


def test_a_refund_after_the_lot_expired_goes_into_a_fresh_lot(member_a, account, voucher, agent):
    soon, _ = sorted(live_lots(account))
    redemption = request(member_a, voucher, agent).redemption
    after_expiry = T0 + days(201)
    ledger.expire_due_lots(now=after_expiry)

    redemption_cancel(redemption=redemption, actor=agent, reason="Changed my mind", now=after_expiry)

    assert balance(member_a) == 500
    assert PointLot.objects.get(pk=soon).remaining == 0
    assert PointLot.objects.filter(entry=fresh(redemption).refund_entry, remaining=200).exists()


@pytest.mark.parametrize("reason", ["", "   "])
@pytest.mark.parametrize("service", [redemption_reject, redemption_cancel])
def test_rejecting_or_cancelling_needs_a_reason(service, reason, requested, agent):
    before = state()

    with pytest.raises(ApplicationError) as error:
        service(redemption=requested, actor=agent, reason=reason, now=LATER)

    assert (error.value.code, error.value.field) == ("reason_required", "reason")
    assert state() == before


def test_a_reason_longer_than_the_record_holds_is_refused(requested, agent):
    before = state()

    with pytest.raises(ApplicationError) as error:
        redemption_cancel(redemption=requested, actor=agent, reason="x" * 501, now=LATER)

    assert error.value.field == "reason"
    assert state() == before


# --- Illegal transitions ---------------------------------------------------


def _approve(redemption, actor):
    return redemption_approve(redemption=redemption, actor=actor, now=LATER)


def _fulfil(redemption, actor):
    return redemption_fulfil(redemption=redemption, actor=actor, shipping_note="Parcel", now=LATER)


def _reject(redemption, actor):
    return redemption_reject(redemption=redemption, actor=actor, reason="No", now=LATER)


def _cancel(redemption, actor):
    return redemption_cancel(redemption=redemption, actor=actor, reason="No", now=LATER)


ACTIONS = {"approve": _approve, "fulfil": _fulfil, "reject": _reject, "cancel": _cancel}
REACH = {
    Status.REQUESTED: [],
    Status.APPROVED: ["approve"],
    Status.FULFILLED: ["approve", "fulfil"],
    Status.REJECTED: ["reject"],
    Status.CANCELLED: ["cancel"],
}
ILLEGAL = [
    (Status.REQUESTED, "fulfil"),
    (Status.FULFILLED, "approve"),
    (Status.FULFILLED, "reject"),
    (Status.FULFILLED, "cancel"),
    (Status.REJECTED, "approve"),
    (Status.REJECTED, "fulfil"),
    (Status.REJECTED, "cancel"),
    (Status.CANCELLED, "approve"),
    (Status.CANCELLED, "fulfil"),
    (Status.CANCELLED, "reject"),
]


@pytest.mark.parametrize(("start", "action"), ILLEGAL, ids=[f"{s}-{a}" for s, a in ILLEGAL])
def test_every_illegal_transition_is_refused_and_changes_nothing(
    start, action, member_a, account, voucher, agent
):
    redemption = request(member_a, voucher, agent).redemption
    for step in REACH[start]:
        ACTIONS[step](redemption, agent)
    assert fresh(redemption).status == start
    before = state()
    balance_before, stock_before = balance(member_a), stock(voucher)

    with pytest.raises(IllegalTransition) as error:
        ACTIONS[action](redemption, agent)

    assert error.value.code == "illegal_transition"
    assert error.value.message.startswith("This redemption")
    assert fresh(redemption).status == start
    assert (balance(member_a), stock(voucher)) == (balance_before, stock_before)
    assert state() == before


REPEATS = [(Status.APPROVED, "approve"), (Status.FULFILLED, "fulfil"), (Status.REJECTED, "reject")]
REPEATS.append((Status.CANCELLED, "cancel"))


@pytest.mark.parametrize(("start", "action"), REPEATS, ids=[a for _, a in REPEATS])
def test_repeating_the_action_that_made_the_status_is_a_no_op(
    start, action, member_a, account, voucher, agent
):
    redemption = request(member_a, voucher, agent).redemption
    for step in REACH[start]:
        ACTIONS[step](redemption, agent)
    before = state()

    result = ACTIONS[action](redemption, agent)

    assert result.replayed
    assert result.redemption.status == start
    assert state() == before


def test_every_pair_of_statuses_is_either_legal_a_repeat_or_refused():
    legal = {
        (Status.REQUESTED, "approve"),
        (Status.REQUESTED, "reject"),
        (Status.REQUESTED, "cancel"),
        (Status.APPROVED, "fulfil"),
        (Status.APPROVED, "reject"),
        (Status.APPROVED, "cancel"),
    }
    repeats = set(REPEATS)
    every = {(status, action) for status in Status.values for action in ACTIONS}

    assert every == legal | repeats | set(ILLEGAL)
    assert not (legal & set(ILLEGAL)) and not (repeats & set(ILLEGAL))


def test_the_refusal_to_fulfil_a_requested_redemption_says_to_approve_first(requested, agent):
    with pytest.raises(IllegalTransition) as error:
        redemption_fulfil(redemption=requested, actor=agent, now=LATER)

    assert "approved before" in error.value.message


def test_a_stale_copy_cannot_undo_a_decision(requested, member_a, agent):
    stale = Redemption.objects.get(pk=requested.pk)
    redemption_cancel(redemption=requested, actor=agent, reason="Changed my mind", now=LATER)

    with pytest.raises(IllegalTransition):
        redemption_approve(redemption=stale, actor=agent, now=LATER)

    assert fresh(requested).status == Status.CANCELLED
    assert balance(member_a) == 500


# --- Query counts ----------------------------------------------------------


def test_a_request_runs_a_small_fixed_number_of_queries(
    member_a, account, voucher, agent, django_assert_max_num_queries
):
    with django_assert_max_num_queries(18):
        request(member_a, voucher, agent)


# --- Races (PostgreSQL) ----------------------------------------------------


# The racing tests commit for real; a transactional test ends by emptying every
# table, and the post_migrate handlers put content types and role groups back.


@pytest.fixture
def redemption_content_type():
    """The refund names its redemption through a content type. Looked up here, once, so
    threads never race to create it."""
    return ContentType.objects.get_for_model(Redemption)


def race(count: int, work) -> list:
    """Run `work(i)` in `count` threads released together; returns each result or exception."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # collected for the assertions
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a racing request never finished"
    return results


RACERS = 6
RACER = Actor.job("race")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_redemptions_of_the_last_item_give_it_to_exactly_one_member(program_a, voucher):
    Reward.objects.filter(pk=voucher.pk).update(stock=1)
    members = [
        member_create(program=program_a, first_name=f"Racer{i}", last_name="Member") for i in range(RACERS)
    ]
    for member in members:
        earn(member.account, 1000)

    results = race(
        RACERS,
        lambda i: redemption_request(
            member=members[i],
            reward=voucher,
            idempotency_key=f"last-{i}",
            channel=Source.PORTAL,
            actor=RACER,
            now=NOW,
        ),
    )

    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1, results
    assert all(getattr(e, "code", None) == "out_of_stock" for e in lost), lost
    assert stock(voucher) == 0
    assert Redemption.objects.count() == 1
    winner = won[0].redemption.member
    assert sorted(balance(m) for m in members) == [700] + [1000] * (RACERS - 1)
    assert balance(winner) == 700


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_redemptions_on_one_account_that_can_afford_one_debit_once(member_a, program_a):
    unlimited = Reward.objects.create(program=program_a, name="Spa day", cost_points=300)
    earn(member_a.account, 500)

    results = race(
        RACERS,
        lambda i: redemption_request(
            member=member_a,
            reward=unlimited,
            idempotency_key=f"spa-{i}",
            channel=Source.PORTAL,
            actor=RACER,
            now=NOW,
        ),
    )

    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1, results
    assert all(isinstance(e, InsufficientPoints) for e in lost), lost
    assert balance(member_a) == 200
    assert LedgerEntry.objects.filter(kind=Kind.REDEEM).count() == 1
    assert Redemption.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_submissions_of_one_key_create_one_redemption(member_a, voucher):
    earn(member_a.account, 1000)

    results = race(RACERS, lambda i: request(member_a, voucher, RACER, key="double-click"))

    assert not any(isinstance(r, Exception) for r in results), results
    assert sorted(r.replayed for r in results) == [False] + [True] * (RACERS - 1)
    assert len({r.redemption.pk for r in results}) == 1
    assert balance(member_a) == 700
    assert stock(voucher) == 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_cancellations_refund_once(member_a, voucher, redemption_content_type):
    earn(member_a.account, 1000)
    redemption = request(member_a, voucher, RACER).redemption

    results = race(
        RACERS,
        lambda i: redemption_cancel(redemption=redemption, actor=RACER, reason="Double click", now=LATER),
    )

    assert not any(isinstance(r, Exception) for r in results), results
    assert sorted(r.replayed for r in results) == [False] + [True] * (RACERS - 1)
    assert LedgerEntry.objects.filter(kind=Kind.REFUND).count() == 1
    assert balance(member_a) == 1000
    assert stock(voucher) == 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_reject_and_cancel_refund_once_and_one_of_them_is_refused(
    member_a, voucher, redemption_content_type
):
    earn(member_a.account, 1000)
    redemption = request(member_a, voucher, RACER).redemption
    actions = [_reject, _cancel] * (RACERS // 2)

    results = race(RACERS, lambda i: actions[i](redemption, RACER))

    final = fresh(redemption).status
    assert final in (Status.REJECTED, Status.CANCELLED)
    for action, result in zip(actions, results, strict=True):
        if (action is _reject) == (final == Status.REJECTED):
            assert not isinstance(result, Exception), result
        else:
            assert isinstance(result, IllegalTransition), result
    assert LedgerEntry.objects.filter(kind=Kind.REFUND).count() == 1
    assert balance(member_a) == 1000
    assert stock(voucher) == 5
