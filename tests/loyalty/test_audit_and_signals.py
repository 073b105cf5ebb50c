"""The hooks other apps build on: history labelled by the acting job, and the loyalty signals."""

from decimal import Decimal

import pytest

from loyalty import earning, signals
from loyalty.audit import acting_as
from loyalty.errors import ApplicationError
from loyalty.ledger import Actor
from loyalty.models import EarningRule, Member
from loyalty.services import member_create
from loyalty.tasks import review_tiers


def test_history_written_inside_acting_as_names_the_job(member_a):
    member_a.first_name = "Renamed"
    with acting_as("job:test-job"):
        member_a.save()
    member_a.first_name = "Again"
    member_a.save()
    reasons = list(
        member_a.history.order_by("-history_id").values_list("history_change_reason", flat=True)[:2]
    )
    assert reasons == [None, "job:test-job"]


def test_a_reason_given_by_the_code_is_kept(member_a):
    member_a._change_reason = "merged duplicate"
    with acting_as("job:test-job"):
        member_a.save()
    assert member_a.history.latest("history_id").history_change_reason == "merged duplicate"


def test_celery_tasks_label_their_history(program_a, monkeypatch):
    seen = []

    def spy(**kwargs):
        from loyalty.audit import current_label

        seen.append(current_label())
        return type("R", (), {"summary": lambda self: {}})()

    monkeypatch.setattr("loyalty.tier_review.tiers_review_all", spy)
    review_tiers.delay()
    assert seen == ["job:loyalty.tasks.review_tiers"]


def test_member_joined_carries_the_code_and_a_refusal_rolls_the_member_back(program_a, monkeypatch):
    # Heard by this receiver alone: the referrals app's own receiver judges real codes.
    monkeypatch.setattr(signals.member_joined, "receivers", [])
    monkeypatch.setattr(signals.member_joined, "sender_receivers_cache", {})
    received = []

    def receiver(sender, member, channel, referral_code, request_meta, **kwargs):
        received.append((member.first_name, channel, referral_code, request_meta))
        if referral_code == "BAD":
            raise ApplicationError("Unknown referral code.", field="referral_code")

    signals.member_joined.connect(receiver)
    try:
        member_create(
            program=program_a, first_name="Ann", last_name="Lee", channel="api", referral_code=" AB12 "
        )
        with pytest.raises(ApplicationError):
            member_create(program=program_a, first_name="Bob", last_name="Lee", referral_code="BAD")
    finally:
        signals.member_joined.disconnect(receiver)
    assert received == [("Ann", "api", "AB12", {}), ("Bob", "agent", "BAD", {})]
    assert list(Member.objects.filter(program=program_a).values_list("first_name", flat=True)) == ["Ann"]


def test_activity_posted_is_sent_once_per_new_event_not_on_replay(member_a):
    EarningRule.objects.create(
        program=member_a.program, name="Spend", activity_code="purchase", points_per_unit=1
    )
    received = []

    def receiver(sender, member, code, amount, reference, result, **kwargs):
        received.append((member.pk, code, amount, reference, result.posting.entry.points))

    signals.activity_posted.connect(receiver)
    try:
        for _ in range(2):
            earning.activity_post(
                member=member_a,
                code="purchase",
                amount="12",
                reference="T-1",
                source="api",
                actor=Actor.job("t"),
            )
    finally:
        signals.activity_posted.disconnect(receiver)
    assert received == [(member_a.pk, "purchase", Decimal("12"), "T-1", 12)]
