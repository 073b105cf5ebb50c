"""Helpers of the referral tests: a program A policy, a purchase rule, joining with a code, buying."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.utils import timezone

from loyalty.earning import activity_post
from loyalty.ledger import Actor
from loyalty.services import member_create
from referrals.models import ReferralPolicy
from referrals.services import code_for_member
from tests.loyalty.factories import EarningRuleFactory

_numbers = count(1)


@pytest.fixture
def policy_a(program_a):
    EarningRuleFactory(program=program_a)
    return ReferralPolicy.objects.create(
        program=program_a,
        referrer_points=500,
        referee_points=250,
        min_purchase_amount=Decimal("20.00"),
        window_days=30,
        fraud_threshold=50,
    )


@pytest.fixture
def code_a(policy_a, member_a):
    """Member A's share code (member A is the referrer of most tests)."""
    return code_for_member(member=member_a).code


def join(program, code: str = "", *, email: str = "", phone: str = "", meta=None, channel="portal", **fields):
    n = next(_numbers)
    return member_create(
        program=program,
        first_name=fields.pop("first_name", f"Friend{n}"),
        last_name="Referee",
        email=email or f"friend{n}@example.org",
        phone=phone,
        channel=channel,
        referral_code=code,
        request_meta=meta,
        **fields,
    )


def buy(member, amount, *, reference: str | None = None, source: str = "api", occurred_at=None, now=None):
    return activity_post(
        member=member,
        code="purchase",
        reference=reference or f"P-{next(_numbers)}",
        source=source,
        actor=Actor(label=f"{source}:test"),
        amount=amount,
        occurred_at=occurred_at,
        now=now,
    )


def days_ago(days: int):
    return timezone.now() - timedelta(days=days)
