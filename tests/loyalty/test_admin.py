"""The admin: every screen scoped to the user's programs; rules editable by supervisors; the ledger,
redemptions and shortfalls read-only."""

import pytest
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from loyalty import ledger
from loyalty.ledger import Actor
from loyalty.models import (
    EarningRule,
    LedgerEntry,
    Member,
    MilestoneRule,
    PointsAccount,
    PointsShortfall,
    Promotion,
    PromotionUsage,
    Redemption,
    Reward,
    TierChange,
)
from loyalty.redemptions import redemption_approve, redemption_cancel, redemption_fulfil, redemption_request
from loyalty.services import member_create
from tests.loyalty.factories import (
    ChallengeFactory,
    EarningRuleFactory,
    PromotionFactory,
    StreakFactory,
    TierFactory,
)
from tests.loyalty.ledger_helpers import earn

JOB = Actor.job("test")


@pytest.fixture
def entry(member_a):
    return ledger.credit(
        account=member_a.account,
        points=100,
        reason="Purchase",
        actor=JOB,
        idempotency_key="order-1",
        source="api",
        reference="ORDER-1",
    ).entry


def changelist(client, model, **query):
    response = client.get(reverse(f"admin:loyalty_{model}_changelist"), query)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_an_agent_sees_only_members_of_their_programs(login, agent_a, member_a, member_b, member_of_b):
    assert set(changelist(login(agent_a), "member")) == {member_a, member_b}


def test_an_admin_sees_every_member(login, admin_user, member_a, member_b, member_of_b):
    assert set(changelist(login(admin_user), "member")) == {member_a, member_b, member_of_b}


def test_an_agent_cannot_open_another_programs_member(login, agent_a, member_of_b):
    client = login(agent_a)
    change = client.get(reverse("admin:loyalty_member_change", args=[member_of_b.pk]))
    history = client.get(reverse("admin:loyalty_member_history", args=[member_of_b.pk]))
    # Out of scope answers like a missing row (the admin would redirect to its index instead).
    assert change.status_code == 404
    assert history.status_code == 404


def test_an_agent_sees_the_history_of_their_members(login, agent_a, member_a):
    assert login(agent_a).get(reverse("admin:loyalty_member_history", args=[member_a.pk])).status_code == 200


@pytest.mark.parametrize("query", ["alice", "ALICE", "member-a@example.com", "Member"])
def test_members_are_searchable(login, agent_a, member_a, member_b, query):
    found = changelist(login(agent_a), "member", q=query)
    assert member_a in found


def test_members_are_searchable_by_number_and_phone(login, admin_user, member_a, member_b):
    member_b.phone = "+44 20 7946 0018"
    member_b.save()
    client = login(admin_user)
    assert changelist(client, "member", q=member_a.membership_number) == [member_a]
    assert changelist(client, "member", q="7946") == [member_b]
    assert changelist(client, "member", q="020 7946 0018") == [member_b]  # digits, without the country code


def test_the_program_filter_offers_only_the_agents_programs(login, agent_a, member_a, member_of_b):
    response = login(agent_a).get(reverse("admin:loyalty_member_changelist"))
    body = response.content.decode()
    assert "Program A" in body
    assert "Program B" not in body


def test_the_member_form_offers_only_the_supervisors_programs(login, supervisor, program_b, member_a):
    response = login(supervisor).get(reverse("admin:loyalty_member_add"))
    assert list(response.context["adminform"].form.fields["program"].queryset) == [member_a.program]


def test_a_member_added_in_the_admin_gets_an_account(login, admin_user, program_a):
    response = login(admin_user).post(
        reverse("admin:loyalty_member_add"),
        {
            "program": program_a.pk,
            "membership_number": "79927398713",
            "first_name": "Eve",
            "last_name": "Added",
            "joined_on": "2025-01-01",
            "status": "active",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    member = Member.objects.get(membership_number="79927398713")
    assert PointsAccount.objects.get(member=member).balance == 0
    assert member.history.get().history_user == admin_user


def test_a_members_tier_and_program_are_not_edited_in_the_admin(login, admin_user, member_a, program_b):
    tier = TierFactory(program=member_a.program, name="Gold", rank=2, threshold=1000)
    response = login(admin_user).post(
        reverse("admin:loyalty_member_change", args=[member_a.pk]),
        {
            "program": program_b.pk,
            "tier": tier.pk,
            "membership_number": member_a.membership_number,
            "first_name": "Alicia",
            "last_name": "Member",
            "joined_on": "2025-01-01",
            "status": "active",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    member_a.refresh_from_db()
    assert (member_a.first_name, member_a.program.slug, member_a.tier) == ("Alicia", "program-a", None)
    assert not TierChange.objects.exists()


def test_ledger_entries_are_read_only(login, admin_user, entry):
    client = login(admin_user)
    change_url = reverse("admin:loyalty_ledgerentry_change", args=[entry.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    response = client.post(change_url, {"points": 999999, "reason": "Tampered", "_save": "Save"})
    assert response.status_code == 403
    entry.refresh_from_db()
    assert (entry.points, entry.reason) == (100, "Purchase")
    assert client.get(reverse("admin:loyalty_ledgerentry_add")).status_code == 403
    assert (
        client.post(reverse("admin:loyalty_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert LedgerEntry.objects.count() == 1


@pytest.mark.parametrize("model", ["pointsaccount", "ledgerentry", "pointlot", "pointallocation"])
def test_the_ledger_models_cannot_be_added_in_the_admin(login, admin_user, model):
    assert login(admin_user).get(reverse(f"admin:loyalty_{model}_add")).status_code == 403


def test_ledger_entries_are_searchable_by_reference_and_key(login, admin_user, entry, member_a):
    client = login(admin_user)
    assert changelist(client, "ledgerentry", q="ORDER-1") == [entry]
    assert changelist(client, "ledgerentry", q="order-1") == [entry]
    assert changelist(client, "ledgerentry", q="ORDER") == []


@pytest.mark.parametrize("model", ["pointsaccount", "ledgerentry", "pointlot", "pointallocation"])
def test_an_agent_sees_only_their_programs_ledger(login, agent_a, agent_b, entry, model):
    redeemed = ledger.debit(
        account=entry.account, points=10, reason="Reward", actor=JOB, idempotency_key="r1", source="api"
    )
    assert redeemed.entry.allocations.exists()
    assert changelist(login(agent_a), model)
    assert changelist(login(agent_b), model) == []


def test_an_agent_sees_only_their_programs_accounts(login, agent_b, member_a, member_of_b):
    assert changelist(login(agent_b), "pointsaccount") == [member_of_b.account]


def test_an_agent_sees_only_their_programs(login, agent_a, program_a, program_b):
    assert changelist(login(agent_a), "program") == [program_a]


# --- Program rules, the catalogue, redemptions ---------------------------------------------------------


@pytest.fixture
def rule_a(program_a):
    return EarningRuleFactory(program=program_a, name="Purchases in A")


@pytest.fixture
def tier_a(program_a):
    return TierFactory(program=program_a, name="Gold A", rank=2, threshold=1000)


@pytest.fixture
def tier_b(program_b):
    return TierFactory(program=program_b, name="Gold B", rank=2, threshold=1000)


@pytest.fixture
def reward_a(program_a):
    return Reward.objects.create(program=program_a, name="Cinema ticket", cost_points=50, stock=5)


@pytest.fixture
def promotion_a(program_a, tier_a):
    promotion = PromotionFactory(program=program_a, name="Double week", tiers=[tier_a])
    PromotionUsage.objects.create(promotion=promotion, points_awarded=1234, uses=56)
    return promotion


@pytest.fixture
def redemption_a(member_a, reward_a, agent_a):
    earn(member_a.account, 500)
    return redemption_request(
        member=member_a,
        reward=reward_a,
        idempotency_key="redeem-1",
        channel=LedgerEntry.Source.AGENT,
        actor=Actor.of_user(agent_a),
    ).redemption


@pytest.fixture
def rows_of_a(program_a, member_a, rule_a, tier_a, reward_a, promotion_a, redemption_a):
    """One row of every rule, catalogue and redemption model, all in program A."""
    purchase = earn(member_a.account, 10).entry
    return {
        "earningrule": rule_a,
        "tier": tier_a,
        "promotion": promotion_a,
        "challenge": ChallengeFactory(program=program_a),
        "streak": StreakFactory(program=program_a),
        "milestonerule": MilestoneRule.objects.create(program=program_a, kind="birthday", points=100),
        "reward": reward_a,
        "redemption": redemption_a,
        "pointsshortfall": PointsShortfall.objects.create(
            program=program_a, member=member_a, entry=purchase, points=10, reference="RETURN-1"
        ),
        "tierchange": TierChange.objects.create(
            member=member_a,
            to_tier=tier_a,
            direction=TierChange.Direction.UPGRADE,
            qualifying_points=1000,
            reason="Threshold reached",
            actor_label="job:test",
            changed_at=timezone.now(),
        ),
    }


RULE_MODELS = ["earningrule", "tier", "promotion", "challenge", "streak", "milestonerule", "reward"]
HISTORY_MODELS = [*RULE_MODELS, "redemption", "pointsshortfall"]
SCOPED_MODELS = [*HISTORY_MODELS, "tierchange"]


def admin_url(model, view, *args):
    return reverse(f"admin:loyalty_{model}_{view}", args=args)


def earning_rule_form(program, **fields):
    return {
        "program": program.pk,
        "activity_code": "survey",
        "name": "Survey answered",
        "points_per_unit": "0",
        "fixed_points": "25",
        "rounding": "down",
        "is_active": "on",
        **fields,
    }


def reward_form(program, **fields):
    return {
        "program": program.pk,
        "name": "Cinema ticket",
        "description": "",
        "cost_points": "50",
        "fulfilment": "voucher",
        "stock": "5",
        "is_active": "on",
        **fields,
    }


def promotion_form(program, **fields):
    return {
        "program": program.pk,
        "name": "Bonus weekend",
        "kind": "bonus",
        "multiplier": "1.00",
        "bonus_points": "20",
        "starts_at_0": "2026-01-01",
        "starts_at_1": "00:00:00",
        "ends_at_0": "2026-01-03",
        "ends_at_1": "00:00:00",
        "activity_codes": "[]",
        "is_active": "on",
        **fields,
    }


def form_errors(response) -> dict:
    assert response.status_code == 200, "the form was accepted"
    return response.context["adminform"].form.errors


def test_a_supervisor_adds_an_earning_rule_for_their_program_and_sees_it_in_its_history(
    login, supervisor, program_a
):
    client = login(supervisor)

    response = client.post(admin_url("earningrule", "add"), earning_rule_form(program_a))

    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = EarningRule.objects.get(program=program_a, activity_code="survey")
    assert rule.fixed_points == 25
    assert rule.history.get().history_user == supervisor
    history = client.get(admin_url("earningrule", "history", rule.pk))
    assert history.status_code == 200
    assert [record.history_user for record in history.context["page_obj"]] == [supervisor]


def test_the_rule_form_offers_only_the_supervisors_programs(login, supervisor, program_a, program_b):
    form = login(supervisor).get(admin_url("earningrule", "add")).context["adminform"].form
    assert list(form.fields["program"].queryset) == [program_a]


def test_a_supervisor_cannot_add_a_rule_to_another_program(login, supervisor, program_b):
    response = login(supervisor).post(admin_url("earningrule", "add"), earning_rule_form(program_b))

    assert "program" in form_errors(response)
    assert not EarningRule.objects.exists()


def test_a_supervisor_cannot_move_a_rule_to_another_program(login, supervisor, rule_a, program_b):
    response = login(supervisor).post(
        admin_url("earningrule", "change", rule_a.pk),
        earning_rule_form(program_b, activity_code="purchase", points_per_unit="1", fixed_points="0"),
    )

    assert "program" in form_errors(response)
    rule_a.refresh_from_db()
    assert rule_a.program_id != program_b.pk


def test_saving_a_rule_of_another_program_is_refused_even_past_the_form(rf, supervisor, program_b):
    model_admin = admin.site._registry[EarningRule]
    request = rf.post("/")
    request.user = supervisor
    rule = EarningRule(program=program_b, activity_code="survey", name="Forged", fixed_points=10)

    with pytest.raises(PermissionDenied):
        model_admin.save_model(request, rule, form=None, change=False)
    assert not EarningRule.objects.exists()


def test_a_rule_that_earns_nothing_is_a_form_error(login, supervisor, program_a):
    response = login(supervisor).post(
        admin_url("earningrule", "add"), earning_rule_form(program_a, fixed_points="0")
    )

    assert form_errors(response)
    assert not EarningRule.objects.exists()


def test_an_agent_sees_rules_read_only(login, agent_a, rule_a):
    client = login(agent_a)
    change_url = admin_url("earningrule", "change", rule_a.pk)

    page = client.get(change_url)
    response = client.post(change_url, earning_rule_form(rule_a.program, name="Changed by an agent"))

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert response.status_code == 403
    rule_a.refresh_from_db()
    assert rule_a.name == "Purchases in A"
    assert client.get(admin_url("earningrule", "add")).status_code == 403


@pytest.mark.parametrize("model", SCOPED_MODELS)
def test_an_agent_sees_only_their_programs_rules_rewards_and_redemptions(
    login, agent_a, agent_b, rows_of_a, model
):
    assert changelist(login(agent_a), model) == [rows_of_a[model]]
    assert changelist(login(agent_b), model) == []


@pytest.mark.parametrize("model", SCOPED_MODELS)
def test_another_programs_agent_gets_a_404_for_a_rows_pages(login, agent_b, rows_of_a, model):
    client = login(agent_b)
    pk = rows_of_a[model].pk

    assert client.get(admin_url(model, "change", pk)).status_code == 404
    if model in HISTORY_MODELS:
        version = rows_of_a[model].history.latest().history_id
        assert client.get(admin_url(model, "history", pk)).status_code == 404
        assert client.get(admin_url(model, "simple_history", pk, version)).status_code == 404


@pytest.mark.parametrize("model", HISTORY_MODELS)
def test_every_tracked_row_has_a_history_page_for_its_programs_agent(login, agent_a, rows_of_a, model):
    client = login(agent_a)
    row = rows_of_a[model]

    assert client.get(admin_url(model, "change", row.pk)).status_code == 200
    assert client.get(admin_url(model, "history", row.pk)).status_code == 200
    version = row.history.latest().history_id
    assert client.get(admin_url(model, "simple_history", row.pk, version)).status_code == 200


def test_an_agent_cannot_revert_a_rule_to_an_old_version(login, agent_a, rule_a):
    old = rule_a.history.get().history_id
    rule_a.name = "Renamed by a supervisor"
    rule_a.save()

    response = login(agent_a).post(admin_url("earningrule", "simple_history", rule_a.pk, old), {})

    assert response.status_code == 403
    rule_a.refresh_from_db()
    assert rule_a.name == "Renamed by a supervisor"


def test_an_agent_cannot_revert_a_program_to_an_old_version(login, agent_a, program_a):
    old = program_a.history.earliest().history_id
    program_a.name = "Program A, renamed"
    program_a.save()

    response = login(agent_a).post(admin_url("program", "simple_history", program_a.pk, old), {})

    assert response.status_code == 403
    program_a.refresh_from_db()
    assert program_a.name == "Program A, renamed"


def test_a_supervisor_may_revert_a_rule_to_an_old_version(login, supervisor, rule_a):
    old = rule_a.history.get().history_id
    rule_a.name = "Renamed"
    rule_a.save()

    response = login(supervisor).post(
        admin_url("earningrule", "simple_history", rule_a.pk, old),
        earning_rule_form(
            rule_a.program, activity_code="purchase", name="Purchases in A", points_per_unit="1"
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    rule_a.refresh_from_db()
    assert rule_a.name == "Purchases in A"
    assert rule_a.history.latest().history_user == supervisor


# --- Promotions, tiers and rewards ---------------------------------------------------------------------


def test_a_promotion_shows_its_usage_read_only(login, supervisor, promotion_a):
    client = login(supervisor)
    change_url = admin_url("promotion", "change", promotion_a.pk)

    page = client.get(change_url)
    response = client.post(
        change_url,
        promotion_form(promotion_a.program, name="Renamed", uses="0", points_awarded="0"),
    )

    assert {"uses", "points_awarded"} <= set(page.context["adminform"].readonly_fields)
    assert {"uses", "points_awarded"}.isdisjoint(page.context["adminform"].form.fields)
    body = page.content.decode()
    assert "1234" in body and "56" in body
    assert response.status_code == 302, response.context["adminform"].form.errors
    usage = PromotionUsage.objects.get(promotion=promotion_a)
    assert (usage.points_awarded, usage.uses) == (1234, 56)
    assert Promotion.objects.get(pk=promotion_a.pk).name == "Renamed"


def test_the_promotion_list_shows_uses_and_points_awarded(login, agent_a, promotion_a, program_a):
    PromotionFactory(program=program_a, name="Never used")
    response = login(agent_a).get(admin_url("promotion", "changelist"))
    body = response.content.decode()
    assert "1234" in body and "56" in body
    assert "Never used" in body


def test_the_promotion_tiers_are_chosen_side_by_side_among_the_users_tiers(login, supervisor, tier_a, tier_b):
    page = login(supervisor).get(admin_url("promotion", "add"))
    field = page.context["adminform"].form.fields["tiers"]
    assert list(field.queryset) == [tier_a]
    assert "selectfilter" in page.content.decode()  # filter_horizontal's widget
    assert field.label_from_instance(tier_a) == "Program A: Gold A (1000+)"


def test_a_promotion_cannot_use_another_programs_tier(login, admin_user, program_a, tier_a, tier_b):
    response = login(admin_user).post(
        admin_url("promotion", "add"), promotion_form(program_a, tiers=[tier_a.pk, tier_b.pk])
    )

    assert "tiers" in form_errors(response)
    assert not Promotion.objects.exists()


def test_a_supervisor_adds_a_reward_with_stock_and_minimum_tier(login, supervisor, program_a, tier_a):
    response = login(supervisor).post(admin_url("reward", "add"), reward_form(program_a, min_tier=tier_a.pk))

    assert response.status_code == 302, response.context["adminform"].form.errors
    reward = Reward.objects.get()
    assert (reward.stock, reward.min_tier) == (5, tier_a)
    assert reward.history.get().history_user == supervisor


def test_a_reward_cannot_need_another_programs_tier(login, admin_user, program_a, tier_b):
    response = login(admin_user).post(admin_url("reward", "add"), reward_form(program_a, min_tier=tier_b.pk))

    assert "min_tier" in form_errors(response)
    assert not Reward.objects.exists()


def test_editing_a_reward_keeps_the_stock_redemptions_took_while_the_form_was_open(
    login, supervisor, member_a, reward_a, agent_a
):
    client = login(supervisor)
    change_url = admin_url("reward", "change", reward_a.pk)
    page = client.get(change_url)
    assert 'name="initial-stock" value="5"' in page.content.decode()  # the stock as the form opened
    earn(member_a.account, 500)
    redemption_request(
        member=member_a,
        reward=reward_a,
        idempotency_key="while-open",
        channel=LedgerEntry.Source.AGENT,
        actor=Actor.of_user(agent_a),
    )

    response = client.post(
        change_url, {**reward_form(reward_a.program, name="Cinema ticket (2D)"), "initial-stock": "5"}
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    reward_a.refresh_from_db()
    assert (reward_a.name, reward_a.stock) == ("Cinema ticket (2D)", 4)


def test_a_supervisor_may_set_a_new_stock(login, supervisor, reward_a):
    response = login(supervisor).post(
        admin_url("reward", "change", reward_a.pk), reward_form(reward_a.program, stock="40")
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    reward_a.refresh_from_db()
    assert reward_a.stock == 40


# --- Redemptions, shortfalls and tier changes: read-only -------------------------------------------------


def test_the_redemption_change_view_refuses_edits(login, admin_user, redemption_a):
    client = login(admin_user)
    change_url = admin_url("redemption", "change", redemption_a.pk)

    page = client.get(change_url)
    response = client.post(
        change_url, {"status": "fulfilled", "voucher_code": "FREE-FREE-FREE", "_save": "Save"}
    )

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert response.status_code == 403
    redemption_a.refresh_from_db()
    assert (redemption_a.status, redemption_a.voucher_code) == (Redemption.Status.REQUESTED, "")
    assert client.get(admin_url("redemption", "add")).status_code == 403
    assert client.post(admin_url("redemption", "delete", redemption_a.pk), {"post": "yes"}).status_code == 403
    assert Redemption.objects.filter(pk=redemption_a.pk).exists()


def test_a_cancelled_redemption_cannot_be_reverted_to_requested_through_its_history(
    login, admin_user, redemption_a, agent_a
):
    """Reverting would reopen a refunded redemption: cancelling it again would refund twice."""
    requested = redemption_a.history.get().history_id
    redemption_cancel(redemption=redemption_a, actor=Actor.of_user(agent_a), reason="Changed their mind")
    balance = PointsAccount.objects.get(pk=redemption_a.member.account.pk).balance

    response = login(admin_user).post(
        admin_url("redemption", "simple_history", redemption_a.pk, requested), {}
    )

    assert response.status_code == 403
    redemption_a.refresh_from_db()
    assert redemption_a.status == Redemption.Status.CANCELLED
    assert PointsAccount.objects.get(pk=redemption_a.member.account.pk).balance == balance


def test_an_old_redemption_version_shows_its_values(login, agent_a, redemption_a):
    version = redemption_a.history.get().history_id
    page = login(agent_a).get(admin_url("redemption", "simple_history", redemption_a.pk, version))
    assert page.status_code == 200
    assert "redeem-1" in page.content.decode()


def test_redemptions_are_searchable_by_member_number_and_voucher(
    login, agent_a, redemption_a, member_b, reward_a
):
    redemption_approve(redemption=redemption_a, actor=JOB)
    voucher = redemption_fulfil(redemption=redemption_a, actor=JOB).redemption.voucher_code
    client = login(agent_a)

    assert changelist(client, "redemption", q=redemption_a.member.membership_number) == [redemption_a]
    assert changelist(client, "redemption", q=voucher) == [redemption_a]
    assert changelist(client, "redemption", q=voucher.lower()) == [redemption_a]
    assert changelist(client, "redemption", q=member_b.membership_number) == []


def test_redemptions_filter_by_status(login, agent_a, redemption_a):
    client = login(agent_a)
    assert changelist(client, "redemption", status__exact="requested") == [redemption_a]
    assert changelist(client, "redemption", status__exact="fulfilled") == []


@pytest.mark.parametrize("model", ["redemption", "pointsshortfall", "tierchange"])
def test_redemptions_shortfalls_and_tier_changes_cannot_be_added_or_changed(
    login, admin_user, rows_of_a, model
):
    client = login(admin_user)
    row = rows_of_a[model]
    assert client.get(admin_url(model, "add")).status_code == 403
    assert client.post(admin_url(model, "change", row.pk), {"status": "resolved"}).status_code == 403
    assert client.post(admin_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403


def test_a_shortfall_is_searchable_by_its_return_reference(login, agent_a, rows_of_a):
    assert changelist(login(agent_a), "pointsshortfall", q="return-1") == [rows_of_a["pointsshortfall"]]


@pytest.mark.parametrize("model", ["promotion", "reward", "redemption", "tierchange", "earningrule"])
def test_a_list_costs_the_same_queries_whatever_its_length(login, admin_user, rows_of_a, model):
    client = login(admin_user)
    url = admin_url(model, "changelist")
    with CaptureQueriesContext(connection) as one:
        assert client.get(url).status_code == 200
    more_of_the_same(rows_of_a, model)
    with CaptureQueriesContext(connection) as many:
        response = client.get(url)
    assert response.context["cl"].result_count == 4
    assert len(many) == len(one)


def more_of_the_same(rows_of_a, model):
    """Three more rows like the one in `rows_of_a`, with their related rows."""
    row = rows_of_a[model]
    program = rows_of_a["tier"].program
    for n in range(3):
        if model == "promotion":
            promotion = PromotionFactory(program=program, tiers=[rows_of_a["tier"]])
            PromotionUsage.objects.create(promotion=promotion, uses=n)
        elif model == "reward":
            tier = TierFactory(program=program, rank=10 + n, threshold=10000 + n)
            Reward.objects.create(program=program, name=f"Reward {n}", cost_points=10, min_tier=tier)
        elif model == "redemption":
            member = member_create(program=program, first_name=f"M{n}", last_name="Extra")
            earn(member.account, 100)
            redemption_request(
                member=member,
                reward=row.reward,
                idempotency_key=f"more-{n}",
                channel=LedgerEntry.Source.AGENT,
                actor=JOB,
            )
        elif model == "tierchange":
            member = member_create(program=program, first_name=f"M{n}", last_name="Extra")
            TierChange.objects.create(
                member=member,
                to_tier=row.to_tier,
                direction=TierChange.Direction.UPGRADE,
                qualifying_points=1000,
                reason="Threshold reached",
                actor_label="job:test",
                changed_at=timezone.now(),
            )
        else:
            EarningRuleFactory.fixed_activity(program=program, code=f"activity_{n}", points=5)


# --- Returns and unpaid activities (read-only records) ----------------------------------------------


@pytest.fixture
def returned_and_unpaid(member_a, member_of_b):
    from loyalty.earning import activity_post, purchase_return
    from loyalty.ledger import Actor
    from loyalty.models import EarningRule

    job = Actor.job("tests")
    for member in (member_a, member_of_b):
        EarningRule.objects.create(
            program=member.program, activity_code="purchase", name="Purchase", points_per_unit=1, min_amount=5
        )
        activity_post(member=member, code="purchase", amount="20", reference="P1", source="api", actor=job)
        activity_post(member=member, code="purchase", amount="2", reference="P2", source="api", actor=job)
        purchase_return(
            member=member, original_reference="P1", amount="20", reference="R1", source="api", actor=job
        )


@pytest.mark.parametrize("model", ["purchasereturn", "unpaidactivity"])
def test_returns_and_unpaid_activities_are_listed_read_only(login, admin_user, returned_and_unpaid, model):
    client = login(admin_user)
    listing = client.get(admin_url(model, "changelist"))
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 2
    assert client.get(admin_url(model, "add")).status_code == 403
    row = listing.context["cl"].result_list[0]
    page = client.get(admin_url(model, "change", row.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
