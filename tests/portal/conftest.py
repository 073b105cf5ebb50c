"""Helpers of the portal tests: points through the ledger, rewards, and a clean throttle."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty import ledger, redemptions
from loyalty.ledger import Actor
from loyalty.models import Redemption, Reward
from loyalty.portal import services

JOB = Actor.job("test")


@pytest.fixture(autouse=True)
def _fresh_throttle(monkeypatch):
    # The sign-up throttle counts attempts in the cache; each test counts under its own keys
    # (never cache.clear(): on Redis that would flush a database other things may share).
    monkeypatch.setattr(services, "SIGNUP_KEY_PREFIX", f"test-portal-signup:{uuid.uuid4()}:")


def earn(member, points, *, key, reason="Purchase in store", pending_days=0, expires_in_days=None, **extra):
    """Credit `points` to the member (pending for `pending_days`, expiring after `expires_in_days`)."""
    now = timezone.now()
    options = {}
    if pending_days:
        options["available_from"] = now + timedelta(days=pending_days)
    if expires_in_days is not None:
        options["expires_at"] = now + timedelta(days=expires_in_days)
    return ledger.credit(
        account=member.account,
        points=points,
        reason=reason,
        actor=JOB,
        idempotency_key=key,
        source="api",
        **options,
        **extra,
    ).entry


def reward(program, name="Cinema ticket", cost=100, **fields) -> Reward:
    return Reward.objects.create(program=program, name=name, cost_points=cost, **fields)


def redeem(member, prize, *, key) -> Redemption:
    return redemptions.redemption_request(
        member=member, reward=prize, idempotency_key=key, channel="agent", actor=JOB
    ).redemption


def balance(member) -> int:
    member.account.refresh_from_db()
    return member.account.balance
