import pytest
from rest_framework.test import APIClient

from loyalty.api.services import api_key_create
from loyalty.models import Reward
from tests.loyalty.factories import EarningRuleFactory


@pytest.fixture
def key_a(program_a):
    key, raw = api_key_create(program=program_a, name="pos-a")
    key.raw = raw
    return key


@pytest.fixture
def key_b(program_b):
    key, raw = api_key_create(program=program_b, name="pos-b")
    key.raw = raw
    return key


@pytest.fixture
def api(key_a):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key_a.raw}")
    return client


@pytest.fixture
def api_b(key_b):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key_b.raw}")
    return client


@pytest.fixture
def rules_a(program_a):
    return [
        EarningRuleFactory(program=program_a),
        EarningRuleFactory.fixed_activity(program=program_a, code="survey", points=25),
    ]


@pytest.fixture
def reward_a(program_a):
    return Reward.objects.create(program=program_a, name="Cinema ticket", cost_points=50, stock=5)
