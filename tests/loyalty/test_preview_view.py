"""'What would this earn?': the agent's preview of an activity, with nothing written."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from loyalty.earning import activity_post
from loyalty.ledger import Actor
from loyalty.models import EarningRule, LedgerEntry, PromotionUsage, Tier
from tests.loyalty.factories import EarningRuleFactory, PromotionFactory
from tests.loyalty.ledger_helpers import snapshot

JOB = Actor.job("test")


def url(member):
    return reverse("loyalty:member_preview", kwargs={"number": member.membership_number})


def local_input(moment: datetime, member) -> str:
    """A moment as the datetime-local input sends it, in the member's program time zone."""
    return timezone.localtime(moment, member.program.tz).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def gold(program_a):
    return Tier.objects.create(
        program=program_a, name="Gold", rank=2, threshold=5000, multiplier=Decimal("1.50")
    )


@pytest.fixture
def rules(program_a):
    return {
        "purchase": EarningRuleFactory(program=program_a, rounding=EarningRule.Rounding.DOWN),
        "survey": EarningRuleFactory.fixed_activity(
            program=program_a, code="survey", points=50, cap_per_day=30
        ),
    }


@pytest.fixture
def gold_member(member_a, gold):
    member_a.tier = gold
    member_a.save()
    return member_a


@pytest.fixture
def promotions(program_a, gold):
    """Running now: a 2x on purchases with a budget, and a 10-point bonus on everything for Gold."""
    now = timezone.now()
    window = {"starts_at": now - timedelta(days=10), "ends_at": now + timedelta(days=10)}
    return [
        PromotionFactory(
            program=program_a,
            name="Double week",
            kind="multiplier",
            multiplier=Decimal("2.00"),
            activity_codes=["purchase"],
            budget_points=10_000,
            **window,
        ),
        PromotionFactory(program=program_a, name="Gold thanks", bonus_points=10, tiers=[gold], **window),
    ]


def written():
    return snapshot(), PromotionUsage.objects.count(), LedgerEntry.objects.count()


# --- Access ----------------------------------------------------------------------------


def test_it_works_for_an_agent_of_the_program(login, agent_a, member_a, rules):
    response = login(agent_a).get(url(member_a))
    assert response.status_code == 200
    assert response.context["form"].fields["activity"].choices == [
        ("purchase", "Purchase"),
        ("survey", "Survey"),
    ]


def test_another_programs_agent_gets_a_404(login, agent_b, member_a, rules):
    assert login(agent_b).get(url(member_a), {"activity": "purchase", "amount": "10"}).status_code == 404


def test_anonymous_users_go_to_login(client, member_a):
    response = client.get(url(member_a))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_members_are_forbidden(login, member_a):
    assert login(member_a.user).get(url(member_a)).status_code == 403


def test_the_member_page_links_the_preview(login, agent_a, member_a):
    assert url(member_a) in login(agent_a).get(member_a.get_absolute_url()).content.decode()


# --- The preview -------------------------------------------------------------------------


def test_it_shows_every_part_of_the_calculation(login, agent_a, gold_member, rules, promotions):
    response = login(agent_a).get(url(gold_member), {"activity": "purchase", "amount": "123.45"})
    assert response.status_code == 200
    calculation = response.context["calculation"]
    # base 123 (rounded down), Gold +61, Double week +123, Gold thanks +10
    assert (calculation.base, calculation.tier, calculation.tier_boost) == (123, "Gold", 61)
    assert [(line.name, line.points) for line in calculation.promotions] == [
        ("Double week", 123),
        ("Gold thanks", 10),
    ]
    assert calculation.total == 317
    body = response.content.decode()
    for text in (
        "Tier boost (Gold)",
        "Promotion: Double week",
        "Promotion: Gold thanks",
        "317",
        "123.45 EUR",
    ):
        assert text in body
    assert "Nothing was posted" in body


def test_it_shows_the_cap_and_its_note(login, agent_a, gold_member, rules):
    response = login(agent_a).get(url(gold_member), {"activity": "survey"})
    calculation = response.context["calculation"]
    assert (calculation.base, calculation.tier_boost, calculation.capped, calculation.total) == (
        50,
        25,
        45,
        30,
    )
    body = response.content.decode()
    assert "Limited by the daily cap of 30 points." in body
    assert "\N{MINUS SIGN}45" in body


def test_it_writes_nothing(login, agent_a, gold_member, rules, promotions):
    before = written()
    history = gold_member.history.count()
    response = login(agent_a).get(url(gold_member), {"activity": "purchase", "amount": "80"})
    assert response.context["calculation"].total > 0
    assert written() == before
    assert gold_member.history.count() == history


def test_it_equals_what_posting_then_writes(login, agent_a, gold_member, rules, promotions):
    # An hour ago, to the minute: the form's precision, and a posting cannot be in the future.
    moment = (timezone.now() - timedelta(hours=1)).replace(second=0, microsecond=0)
    query = {"activity": "purchase", "amount": "99.99", "occurred_at": local_input(moment, gold_member)}
    preview = login(agent_a).get(url(gold_member), query).context["calculation"]
    assert preview.total > 0
    posted = activity_post(
        member=gold_member,
        code="purchase",
        amount="99.99",
        reference="order-1",
        source=LedgerEntry.Source.API,
        actor=JOB,
        occurred_at=moment,
    )
    entry = posted.posting.entry
    assert entry.occurred_at == moment
    assert entry.points + entry.pending_points == preview.total
    assert {k: v for k, v in entry.breakdown.items() if k != "request"} == preview.as_breakdown()
    assert posted.calculation == preview


def test_the_moment_is_read_in_the_programs_time_zone(login, agent_a, member_a, rules, program_a):
    # The bonus starts at midnight on 1 June in Paris, which is 22:00 UTC on 31 May.
    PromotionFactory(
        program=program_a,
        name="June",
        bonus_points=7,
        starts_at=datetime(2026, 5, 31, 22, 0, tzinfo=UTC),
        ends_at=datetime(2026, 7, 1, 22, 0, tzinfo=UTC),
    )
    client = login(agent_a)
    before = client.get(url(member_a), {"activity": "survey", "occurred_at": "2026-05-31T23:59"})
    after = client.get(url(member_a), {"activity": "survey", "occurred_at": "2026-06-01T00:00"})
    assert before.context["calculation"].promotions == ()
    assert [line.points for line in after.context["calculation"].promotions] == [7]
    assert after.context["moment"] == datetime(2026, 5, 31, 22, 0, tzinfo=UTC)


def test_a_moment_in_the_future_is_flagged(login, agent_a, member_a, rules):
    moment = timezone.now() + timedelta(days=30)
    response = login(agent_a).get(
        url(member_a), {"activity": "survey", "occurred_at": local_input(moment, member_a)}
    )
    assert response.status_code == 200
    assert "in the future" in response.content.decode()


# --- Bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"activity": "nope"}, "activity"),
        ({"activity": ""}, "activity"),
        ({"activity": "purchase"}, "amount"),  # a purchase needs an amount
        ({"activity": "purchase", "amount": "abc"}, "amount"),
        ({"activity": "purchase", "amount": "-5"}, "amount"),
        ({"activity": "purchase", "amount": "0"}, "amount"),
        ({"activity": "purchase", "amount": "1.234"}, "amount"),
        ({"activity": "purchase", "amount": "1e99"}, "amount"),
        ({"activity": "purchase", "amount": "NaN"}, "amount"),
        ({"activity": "survey", "occurred_at": "yesterday"}, "occurred_at"),
        ({"activity": "survey", "occurred_at": "1999-12-31T10:00"}, "occurred_at"),
        ({"activity": "survey", "occurred_at": "9999-12-31T23:59"}, "occurred_at"),
        ({"activity": "survey", "occurred_at": "0001-01-01T00:00+05:00"}, "occurred_at"),
    ],
)
def test_bad_input_is_a_form_error(login, agent_a, member_a, rules, query, field):
    before = written()
    response = login(agent_a).get(url(member_a), query)
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert "calculation" not in response.context
    assert written() == before


def test_a_rule_outside_its_window_is_an_unknown_activity(login, agent_a, member_a, rules):
    rule = rules["survey"]
    rule.active_until = timezone.now() - timedelta(days=1)
    rule.save()
    response = login(agent_a).get(url(member_a), {"activity": "survey"})
    assert response.status_code == 400
    assert "no active earning rule for 'survey'" in response.context["form"].errors["activity"][0]


def test_an_inactive_member_earns_nothing(login, agent_a, member_a, rules):
    member_a.status = "suspended"
    member_a.save()
    response = login(agent_a).get(url(member_a), {"activity": "survey"})
    assert response.status_code == 409
    assert "suspended" in response.context["form"].non_field_errors()[0]


def test_a_program_without_rules_says_so(login, agent_a, member_a):
    response = login(agent_a).get(url(member_a))
    assert response.status_code == 200
    assert "has no active earning rule" in response.content.decode()
