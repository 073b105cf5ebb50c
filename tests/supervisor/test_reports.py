"""Each report's figures against values counted by hand on a small fixture (program A, Paris time,
January to March 2025), with noise in program B that must never show."""

from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from agents.supervisor import reports
from disputes.models import Dispute
from loyalty import ledger
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, Member
from loyalty.services import member_create
from tests.loyalty.factories import TierFactory
from tests.supervisor.conftest import at

JOB = Actor.job("tests")


@pytest.fixture
def period(program_a):
    return reports.Period(program=program_a, start=date(2025, 1, 1), end=date(2025, 3, 1))


@pytest.fixture
def ledger_story(program_a, member_a, member_b, member_of_b, post):
    """Jan: A earns 100 (expires 5 Mar) and a 50 bonus. Feb: A redeems 30, +20 and -5 adjustments;
    B earns 200. Mar: A's 65 left of the 100 expire; A's bonus is reversed by 10; B earns 40
    pending, redeems 50 and gets them refunded. Program B: 999 points in February."""
    member_a.joined_on = date(2024, 12, 1)
    member_a.save()
    member_b.joined_on = date(2025, 2, 10)
    member_b.save()
    a, b = member_a.account, member_b.account
    post("earn", a, 100, now=at(2025, 1, 10), expires_at=at(2025, 3, 5))
    bonus = post("bonus", a, 50, now=at(2025, 1, 20))
    post("redeem", a, 30, now=at(2025, 2, 5))
    post("adjust", a, 20, now=at(2025, 2, 6))
    post("adjust", a, -5, now=at(2025, 2, 7))
    post("earn", b, 200, now=at(2025, 2, 15))
    post("earn", member_of_b.account, 999, now=at(2025, 2, 15))
    ledger.expire_due_lots(now=at(2025, 3, 10))
    ledger.reverse(
        entry=bonus,
        points=10,
        reason="Wrong bonus",
        actor=JOB,
        idempotency_key="rev-1",
        source=LedgerEntry.Source.AGENT,
        now=at(2025, 3, 20),
    )
    post("earn", b, 40, now=at(2025, 3, 12), available_from=at(2025, 4, 1))
    redeemed = post("redeem", b, 50, now=at(2025, 3, 15))
    ledger.refund(
        entry=redeemed,
        reason="Cancelled",
        actor=JOB,
        idempotency_key="ref-1",
        source=LedgerEntry.Source.AGENT,
        now=at(2025, 3, 16),
    )
    # Outside the period: never counted in the monthly figures.
    post("earn", b, 7, now=at(2025, 4, 2))


def test_points_per_month(ledger_story, period):
    report = reports.points_report(period)
    assert report.rows == [
        ["Jan 2025", 150, 0, 0, 0],
        ["Feb 2025", 220, 30, 0, 5],
        ["Mar 2025", 40, 0, 65, 10],
    ]
    assert report.totals == ["Total", 410, 30, 65, 15]
    assert "Issued: Jan 2025 150 pts, Feb 2025 220 pts, Mar 2025 40 pts" in str(report.chart)


def test_month_boundaries_are_the_programs_local_midnight(program_a, member_a, post, period):
    # 23:30 UTC on 31 January is 00:30 on 1 February in Paris: a February point.
    post("earn", member_a.account, 5, now=at(2025, 1, 31, 23) + timedelta(minutes=30))
    assert [row[1] for row in reports.points_report(period).rows] == [0, 5, 0]


def test_redemption_rate(ledger_story, period):
    report = reports.redemption_report(period)
    assert report.rows == [
        ["Jan 2025", 150, 0, 0.0],
        ["Feb 2025", 220, 30, 13.6],
        ["Mar 2025", 40, 0, 0.0],
    ]
    assert report.totals == ["Period", 410, 30, 7.3]


def test_participation(ledger_story, period):
    report = reports.participation_report(period)
    assert report.rows == [
        ["Jan 2025", 1, 1, 100.0],  # only A had joined
        ["Feb 2025", 2, 2, 100.0],  # A redeemed, B earned
        ["Mar 2025", 1, 2, 50.0],  # B earned and redeemed; A's expiry and reversal are not activity
    ]
    assert report.totals == ["Period", 2, 2, 100.0]


def test_liability(ledger_story, period):
    report = reports.liability_report(period)
    # Point value 0.01 EUR. Month ends: 150; 150 + 200 + 20 - 30 - 5 = 335; 335 - 65 - 10 - 50 + 50 = 260.
    assert report.rows == [
        ["Jan 2025", 150, Decimal("1.50")],
        ["Feb 2025", 335, Decimal("3.35")],
        ["Mar 2025", 260, Decimal("2.60")],
    ]
    # Now: A 60, B 200 + the April 7 = 267 spendable; 40 pending.
    assert report.totals == ["Now", 267, Decimal("2.67")]
    assert "Pending now: 40 points (0.40 EUR)" in report.note


def test_liability_uses_the_programs_point_value(ledger_story, period, program_a):
    program_a.point_value = Decimal("0.5")
    program_a.save()
    assert reports.liability_report(period).rows[0] == ["Jan 2025", 150, Decimal("75.00")]


def test_tier_distribution(program_a, member_a, member_b, member_of_b):
    bronze = TierFactory(program=program_a, name="Bronze", rank=1, threshold=0)
    silver = TierFactory(program=program_a, name="Silver", rank=2, threshold=100)
    TierFactory(program=program_a, name="Gold", rank=3, threshold=1000)
    member_a.tier = silver
    member_a.save()
    for n, status in enumerate([Member.Status.ACTIVE, Member.Status.CLOSED]):
        extra = member_create(
            program=program_a, first_name=f"Extra{n}", last_name="M", email=f"e{n}@example.com"
        )
        extra.tier, extra.status = bronze, status
        extra.save()
    report = reports.tier_report(
        reports.Period(program=program_a, start=date(2025, 1, 1), end=date(2025, 1, 1))
    )
    # Closed members are left out; tiers nobody holds do not show; no tier comes last.
    assert report.rows == [["Bronze", 1, 33.3], ["Silver", 1, 33.3], ["No tier", 1, 33.3]]
    assert report.totals == ["Total", 3, 100.0]


def _dispute(program, member, *, created, resolved=None, seconds=None, within=None):
    return Dispute.objects.create(
        program=program,
        member=member,
        category=Dispute.Category.MISSING_POINTS,
        subject="Points missing",
        description="My purchase is not there",
        created_at=created,
        updated_at=resolved or created,
        first_response_due=created + timedelta(hours=24),
        resolution_due=created + timedelta(hours=120),
        status=Dispute.Status.RESOLVED if resolved else Dispute.Status.OPEN,
        resolved_at=resolved,
        resolution_seconds=seconds,
        resolved_within_sla=within,
    )


def test_disputes_volume_resolution_time_and_sla(program_a, member_a, member_of_b, period, program_b):
    _dispute(program_a, member_a, created=at(2025, 1, 5), resolved=at(2025, 1, 7), seconds=7200, within=True)
    _dispute(
        program_a, member_a, created=at(2025, 1, 20), resolved=at(2025, 2, 2), seconds=36000, within=False
    )
    _dispute(program_a, member_a, created=at(2025, 2, 10))
    _dispute(
        program_b, member_of_b, created=at(2025, 2, 10), resolved=at(2025, 2, 11), seconds=60, within=True
    )
    report = reports.dispute_report(period)
    assert report.rows == [
        ["Jan 2025", 2, 1, 2.0, 100.0],
        ["Feb 2025", 1, 1, 10.0, 0.0],
        ["Mar 2025", 0, 0, None, None],
    ]
    assert report.totals == ["Period", 3, 2, 6.0, 50.0]


def test_referral_funnel_shares(monkeypatch, period):
    calls = []

    def funnel(**kwargs):
        calls.append(kwargs)
        return {
            "clicks": 200,
            "signups": 50,
            "qualified": 20,
            "rewarded": 15,
            "held": 3,
            "rejected": 2,
            "points_paid": 1500,
        }

    monkeypatch.setattr("referrals.selectors.referral_funnel", funnel)
    report = reports.referral_report(period)
    assert calls == [{"program_ids": [period.program.id], "start": period.since, "end": period.until}]
    assert report.rows == [
        ["Link clicks", 200, None, 100.0],
        ["Referred sign-ups", 50, 25.0, 25.0],
        ["Qualified", 20, 40.0, 10.0],
        ["Rewarded", 15, 75.0, 7.5],
    ]
    assert report.note == "Held for review: 3; rejected: 2; points paid to both sides: 1,500."


def test_referral_funnel_on_real_data_is_empty_without_referrals(period):
    report = reports.referral_report(period)
    assert [row[1] for row in report.rows] == [0, 0, 0, 0]


def test_agent_leaderboard_rows(monkeypatch, period):
    calls = []

    def board(**kwargs):
        calls.append(kwargs)
        user = SimpleNamespace(get_full_name=lambda: "Ann Agent", get_username=lambda: "ann")
        nameless = SimpleNamespace(get_full_name=lambda: "", get_username=lambda: "bob")
        return [
            SimpleNamespace(rank=1, user=user, team=SimpleNamespace(name="Paris"), points=120),
            SimpleNamespace(rank=2, user=nameless, team=None, points=None),
        ]

    monkeypatch.setattr("agents.selectors.leaderboard", board)
    report = reports.agent_report(period)
    assert calls == [
        {"period_start": date(2025, 1, 1), "period_end": date(2025, 4, 1), "program_ids": [period.program.id]}
    ]
    assert report.rows == [[1, "Ann Agent", "Paris", 120], [2, "bob", "", 0]]


def test_every_report_handles_an_empty_program(period):
    for slug in reports.REPORTS:
        report = reports.report_build(slug=slug, period=period)
        assert report.columns and report.chart
