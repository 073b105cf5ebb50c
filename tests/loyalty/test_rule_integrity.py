"""Rules that point at tiers point at tiers of their own program, whichever path writes them;
and a failed CSRF check answers with a page that explains and offers a way back."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import Client
from django.urls import reverse

from loyalty.errors import ApplicationError
from loyalty.ledger import Actor
from loyalty.models import Promotion, Reward, Tier
from loyalty.redemptions import redemption_request
from tests.loyalty.factories import PromotionFactory
from tests.loyalty.ledger_helpers import T0, days, earn


@pytest.fixture
def tier_a(program_a):
    return Tier.objects.create(program=program_a, name="Gold A", rank=1, threshold=0)


@pytest.fixture
def tier_b(program_b):
    return Tier.objects.create(program=program_b, name="Gold B", rank=1, threshold=0)


# --- Reward.min_tier ------------------------------------------------------------------------


def test_a_reward_with_a_tier_of_another_program_does_not_validate(program_a, tier_b):
    reward = Reward(program=program_a, name="Lounge", cost_points=10, min_tier=tier_b)

    with pytest.raises(ValidationError) as error:
        reward.full_clean()

    assert "min_tier" in error.value.message_dict


def test_a_reward_with_a_tier_of_its_own_program_validates(program_a, tier_a):
    Reward(program=program_a, name="Lounge", cost_points=10, min_tier=tier_a).full_clean()


def test_a_reward_written_around_validation_with_a_foreign_tier_is_refused_at_redemption(
    member_a, program_a, tier_b
):
    earn(member_a.account, 100, expires_at=T0 + days(400))
    reward = Reward.objects.create(program=program_a, name="Lounge", cost_points=10, min_tier=tier_b)

    with pytest.raises(ApplicationError, match="another program") as error:
        redemption_request(
            member=member_a,
            reward=reward,
            idempotency_key="r-1",
            channel="agent",
            actor=Actor.job("tests"),
        )

    assert error.value.field == "reward"
    assert not reward.redemptions.exists()


# --- Promotion.tiers ----------------------------------------------------------------------


def test_a_promotion_cannot_be_scoped_to_another_programs_tier(program_a, tier_a, tier_b):
    promotion = PromotionFactory(program=program_a)

    # In a savepoint, as a caller would: the refusal breaks the transaction it is raised in.
    with pytest.raises(ValidationError), transaction.atomic():
        promotion.tiers.add(tier_a, tier_b)
    with pytest.raises(ValidationError), transaction.atomic():
        promotion.tiers.set([tier_b])

    assert list(promotion.tiers.all()) == []


def test_a_tier_cannot_be_given_another_programs_promotion(program_a, tier_b):
    promotion = PromotionFactory(program=program_a)

    with pytest.raises(ValidationError), transaction.atomic():
        tier_b.promotion_set.add(promotion)

    assert not Promotion.tiers.through.objects.exists()


def test_a_promotion_takes_tiers_of_its_own_program(program_a, tier_a):
    promotion = PromotionFactory(program=program_a)

    promotion.tiers.add(tier_a)

    assert list(promotion.tiers.all()) == [tier_a]


# --- CSRF failure page --------------------------------------------------------------------


def test_a_post_without_a_csrf_token_gets_the_friendly_page_with_a_way_back(agent_a):
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent_a)

    response = client.post(reverse("logout"))

    assert response.status_code == 403
    assert [t.name for t in response.templates][:2] == ["403_csrf.html", "base.html"]
    page = response.content.decode()
    assert "This form has expired" in page
    assert "nothing was saved" in page
    assert f'href="{reverse("home")}"' in page
    assert f'href="{reverse("login")}"' in page
