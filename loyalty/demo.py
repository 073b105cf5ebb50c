"""The demo data set: users for every role, two programs, members with a year of history.

Everything goes through the same services and ledger as real traffic, so the
demo reconciles like production would. Deterministic (seeded random) and
idempotent: a second run finds the demo in place and changes nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from importlib import import_module

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from loyalty import earning, ledger, redemptions
from loyalty.errors import ApplicationError
from loyalty.ledger import Actor
from loyalty.milestones import milestones_pay
from loyalty.models import (
    Challenge,
    EarningRule,
    LedgerEntry,
    Member,
    MilestoneRule,
    Program,
    Promotion,
    Reward,
    Tier,
)
from loyalty.roles import Role
from loyalty.services import member_create, staff_user_create
from loyalty.tier_review import tiers_review_all

User = get_user_model()

DEMO_PASSWORD = "demo-loyalty-2026"
FIRST_NAMES = [
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Elif",
    "Femi",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Pavel",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Xavi",
    "Yara",
    "Zoe",
    "Aiko",
    "Bruno",
    "Carla",
    "Dario",
    "Emma",
    "Farid",
    "Gina",
    "Hana",
    "Ivan",
    "Julia",
    "Kofi",
    "Lena",
    "Marco",
    "Nadia",
    "Omar",
    "Priya",
    "Rui",
    "Sofia",
    "Timo",
    "Uma",
    "Viktor",
    "Wanda",
    "Yusuf",
]
LAST_NAMES = [
    "Adams",
    "Bauer",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jansen",
    "Kowalski",
    "Larsen",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Quispe",
    "Rossi",
    "Silva",
    "Tanaka",
    "Ueda",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zimmer",
    "Ahmed",
    "Berg",
    "Chen",
    "Dias",
]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    note: str


@dataclass(frozen=True)
class ProgramSpec:
    slug: str
    name: str
    members: int
    fields: dict
    rules: tuple[dict, ...]
    tiers: tuple[tuple[str, int, str, str], ...]  # name, threshold, multiplier, benefits
    rewards: tuple[dict, ...]
    milestones: tuple[dict, ...]
    spend: tuple[int, int]  # purchase amount range, whole currency units
    visits_per_month: tuple[int, int]
    activities: tuple[str, ...]  # other activity codes members do now and then


PROGRAMS = (
    ProgramSpec(
        slug="bean-there",
        name="Bean There Coffee",
        members=280,
        fields={
            "currency": "EUR",
            "time_zone": "Europe/Berlin",
            "expiry_policy": Program.ExpiryPolicy.MONTHS_AFTER_EARN,
            "expiry_months": 6,
            "pending_days": 0,
            "negative_balance_policy": Program.NegativeBalancePolicy.FORBID,
            "adjustment_approval_threshold": 200,
            "point_value": Decimal("0.0100"),
        },
        rules=(
            {
                "activity_code": "purchase",
                "name": "Coffee purchase",
                "points_per_unit": Decimal("10"),
                "cap_per_day": 300,
            },
            {"activity_code": "survey", "name": "Survey answered", "fixed_points": 20, "cap_per_month": 40},
            {"activity_code": "review", "name": "Review written", "fixed_points": 15},
            {"activity_code": "app_download", "name": "App downloaded", "fixed_points": 50},
        ),
        tiers=(
            ("Bean", 0, "1.00", "Free refills on filter coffee."),
            ("Silver", 1500, "1.25", "25% more points; birthday drink."),
            ("Gold", 3000, "1.50", "50% more points; skip the queue with the app."),
        ),
        rewards=(
            {"name": "Free coffee", "cost_points": 100},
            {"name": "Pastry of your choice", "cost_points": 150},
            {"name": "Bean There tote bag", "cost_points": 400, "stock": 25, "fulfilment": "shipment"},
            {"name": "Barista class", "cost_points": 1200, "stock": 6, "min_tier": "Gold"},
        ),
        milestones=(
            {"kind": "birthday", "points": 50},
            {"kind": "anniversary", "points": 100},
            {"kind": "lifetime", "points": 250, "threshold": 2500},
        ),
        spend=(2, 14),
        visits_per_month=(0, 2),
        activities=("survey", "review"),
    ),
    ProgramSpec(
        slug="skyhigh",
        name="SkyHigh Miles",
        members=220,
        fields={
            "currency": "USD",
            "time_zone": "America/New_York",
            "expiry_policy": Program.ExpiryPolicy.END_OF_NTH_YEAR,
            "expiry_years": 1,
            "pending_days": 14,
            "negative_balance_policy": Program.NegativeBalancePolicy.ALLOW_DEBT,
            "adjustment_approval_threshold": 2000,
            "point_value": Decimal("0.0120"),
        },
        rules=(
            {
                "activity_code": "purchase",
                "name": "Flight booked",
                "points_per_unit": Decimal("5"),
                "rounding": "nearest",
                "min_amount": Decimal("49"),
            },
            {"activity_code": "review", "name": "Flight reviewed", "fixed_points": 250, "cap_per_month": 500},
            {"activity_code": "app_download", "name": "App downloaded", "fixed_points": 1000},
        ),
        tiers=(
            ("Blue", 0, "1.00", "Members' fares."),
            ("Silver", 25000, "1.25", "Priority check-in; 25% bonus miles."),
            ("Gold", 45000, "1.50", "Lounge access; 50% bonus miles."),
            ("Platinum", 80000, "2.00", "Upgrades on request; double miles."),
        ),
        rewards=(
            {"name": "Lounge day pass", "cost_points": 5000},
            {"name": "Seat upgrade", "cost_points": 12500, "min_tier": "Silver"},
            {"name": "Return flight in Europe", "cost_points": 25000, "stock": 40},
            {"name": "Model aircraft", "cost_points": 8000, "stock": 15, "fulfilment": "shipment"},
        ),
        milestones=(
            {"kind": "birthday", "points": 1000},
            {"kind": "lifetime", "points": 5000, "threshold": 100000},
        ),
        spend=(60, 900),
        visits_per_month=(0, 2),
        activities=("review",),
    ),
)


def seed_demo(*, months: int = 12, log=print) -> list[DemoLogin]:
    """Create the demo once; return the demo logins (printed by the command)."""
    programs = {spec.slug: _program(spec) for spec in PROGRAMS}
    logins = _staff_users(programs)
    for spec in PROGRAMS:
        program = programs[spec.slug]
        if program.members.exists():
            log(f"{program.name}: already seeded, left unchanged.")
            continue
        log(f"{program.name}: creating {spec.members} members with {months} months of history...")
        _seed_program(spec, program, months=months, rng=random.Random(spec.slug))
    logins.append(_member_login(programs["bean-there"]))
    # The other apps build on the programs and members seeded above.
    for app in ("referrals", "disputes", "agents"):
        import_module(f"{app}.demo").seed(programs=programs, months=months, log=log)
    return logins


def _program(spec: ProgramSpec) -> Program:
    program, created = Program.objects.get_or_create(
        slug=spec.slug, defaults={"name": spec.name, **spec.fields}
    )
    if created:
        _program_rules(spec, program)
    return program


def _program_rules(spec: ProgramSpec, program: Program) -> None:
    for rule in spec.rules:
        EarningRule.objects.create(program=program, **rule)
    tiers = {
        name: Tier.objects.create(
            program=program,
            name=name,
            rank=rank,
            threshold=threshold,
            multiplier=Decimal(multiplier),
            benefits=benefits,
        )
        for rank, (name, threshold, multiplier, benefits) in enumerate(spec.tiers, start=1)
    }
    for reward in spec.rewards:
        Reward.objects.create(program=program, **{**reward, "min_tier": tiers.get(reward.get("min_tier"))})
    for milestone in spec.milestones:
        MilestoneRule.objects.create(program=program, **milestone)
    now = timezone.now()
    # A promotion running now, and a challenge for this month, so agents see them at work.
    if spec.slug == "bean-there":
        promotion = Promotion.objects.create(
            program=program,
            name="Autumn double points",
            kind=Promotion.Kind.MULTIPLIER,
            multiplier=Decimal("2"),
            starts_at=now - timedelta(days=20),
            ends_at=now + timedelta(days=10),
            activity_codes=["purchase"],
            budget_points=60000,
        )
    else:
        promotion = Promotion.objects.create(
            program=program,
            name="Winter bonus miles",
            kind=Promotion.Kind.FIXED_BONUS,
            bonus_points=500,
            starts_at=now - timedelta(days=30),
            ends_at=now + timedelta(days=30),
            activity_codes=["purchase"],
            budget_points=150000,
            max_uses=400,
        )
    promotion.tiers.set([])
    Challenge.objects.create(
        program=program,
        name="Five visits this month",
        activity_code="purchase",
        required_count=5,
        starts_at=now - timedelta(days=25),
        ends_at=now + timedelta(days=5),
        bonus_points=100 if spec.slug == "bean-there" else 2000,
    )


def _staff_users(programs: dict[str, Program]) -> list[DemoLogin]:
    wanted = [
        ("admin", Role.ADMIN, [], "every program, Django admin"),
        ("supervisor", Role.SUPERVISOR, list(programs.values()), "both programs; approves corrections"),
        ("agent", Role.AGENT, [programs["bean-there"]], "Bean There Coffee only"),
        ("agent.sky", Role.AGENT, [programs["skyhigh"]], "SkyHigh Miles only"),
    ]
    logins = []
    for username, role, assigned, note in wanted:
        if not User.objects.filter(username=username).exists():
            staff_user_create(
                username=username,
                role=role,
                password=DEMO_PASSWORD,
                programs=assigned,
                email=f"{username}@demo.example",
                first_name=username.split(".")[0].title(),
            )
        logins.append(DemoLogin(username, role.value, note))
    return logins


def _member_login(program: Program) -> DemoLogin:
    """Give the demo's most active coffee member a portal login."""
    user = User.objects.filter(username="member").first()
    if user is None:
        member = (
            Member.objects.filter(program=program, user__isnull=True)
            .order_by("-account__lifetime_earned", "id")
            .first()
        )
        user = User.objects.create_user(username="member", password=DEMO_PASSWORD, email=member.email)
        member.user = user
        member.save(update_fields=["user"])
    return DemoLogin("member", Role.MEMBER.value, f"portal of a {program.name} member")


def _seed_program(spec: ProgramSpec, program: Program, *, months: int, rng: random.Random) -> None:
    now = timezone.now()
    start = now - timedelta(days=30 * months + 15)
    seeder = Actor.job("seed_demo")
    members = []
    with transaction.atomic():
        for index in range(spec.members):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            joined = start + timedelta(days=rng.randint(0, 30 * months - 20))
            members.append(
                (
                    member_create(
                        channel="demo",
                        program=program,
                        first_name=first,
                        last_name=last,
                        email=f"{first}.{last}.{index}@demo.example".lower(),
                        phone=f"+49 30 {rng.randint(1000000, 9999999)}",
                        birth_date=date(rng.randint(1950, 2004), rng.randint(1, 12), rng.randint(1, 28)),
                        joined_on=joined.date(),
                    ),
                    joined,
                )
            )
    # Month by month for everyone, so each account's entries are posted in time order
    # and the jobs run when they would have, leaving real expired and pending points.
    rewards = list(Reward.objects.filter(program=program, is_active=True).order_by("cost_points"))
    month_start = start
    while month_start < now:
        month_end = min(month_start + timedelta(days=30), now)
        with transaction.atomic():
            for member, joined in members:
                if joined < month_end:
                    _member_month(spec, member, max(joined, month_start), month_end, rng, seeder, rewards)
            ledger.activate_pending_lots(now=month_end)
            ledger.expire_due_lots(now=month_end)
        month_start = month_end
    # Today's jobs, as the beat would have run them.
    milestones_pay(now=now, program=program)
    tiers_review_all(now=now, program=program)


def _member_month(spec, member, begin: datetime, end: datetime, rng, actor, rewards) -> None:
    # Visits at least ten minutes apart and an hour before the month's jobs run, so
    # every account's entries are posted in time order (what balance-as-of relies on).
    span = int((end - begin).total_seconds()) - 3600
    if span <= 0:
        return
    offsets = sorted(rng.randint(0, span) for _ in range(rng.randint(*spec.visits_per_month)))
    moments, last = [], None
    for offset in offsets:
        moment = begin + timedelta(seconds=offset)
        if last is None or moment >= last + timedelta(minutes=10):
            moments.append(moment)
            last = moment
    for index, moment in enumerate(moments):
        reference = f"DEMO-{member.membership_number}-{moment.timestamp():.0f}"
        amount = Decimal(rng.randint(spec.spend[0] * 100, spec.spend[1] * 100)) / 100
        bought = earning.activity_post(
            member=member,
            code="purchase",
            reference=reference,
            amount=amount,
            occurred_at=moment,
            source=LedgerEntry.Source.API,
            actor=actor,
            now=moment,
        )
        roll = rng.random()
        if roll < 0.04 and bought.posting:
            # Some purchases come back, in part or in full.
            earning.purchase_return(
                member=member,
                original_reference=reference,
                reference=f"{reference}-R",
                amount=amount if roll < 0.02 else (amount / 2).quantize(Decimal("0.01")),
                source=LedgerEntry.Source.API,
                actor=actor,
                now=moment + timedelta(minutes=3),
            )
        elif roll < 0.10 and index == 0 and spec.activities:
            earning.activity_post(
                member=member,
                code=rng.choice(spec.activities),
                reference=f"{reference}-A",
                occurred_at=moment,
                source=LedgerEntry.Source.API,
                actor=actor,
                now=moment + timedelta(minutes=1),
            )
        elif roll < 0.26:
            _redeem(member, rewards, rng, actor, moment + timedelta(minutes=5), reference)


def _redeem(member, rewards, rng, actor, moment, reference) -> None:
    """A redemption, then what happens to it: most are fulfilled, some stay open, a few fail."""
    account = ledger.lock_accounts([member.account.pk])[member.account.pk]
    choices = [reward for reward in rewards if reward.cost_points <= account.balance]
    if not choices:
        return
    try:
        result = redemptions.redemption_request(
            member=member,
            reward=rng.choice(choices),
            idempotency_key=f"{reference}-X",
            channel=LedgerEntry.Source.PORTAL,
            actor=actor,
            now=moment,
        )
    except ApplicationError:
        return  # out of stock, tier too low: the member just did not get it
    # Decided a minute later: still before the member's next visit (ten minutes apart).
    redemption, fate, later = result.redemption, rng.random(), moment + timedelta(minutes=1)
    if fate < 0.05:
        redemptions.redemption_reject(
            redemption=redemption, actor=actor, reason="Address could not be verified", now=later
        )
    elif fate < 0.10:
        redemptions.redemption_cancel(
            redemption=redemption, actor=actor, reason="Member changed their mind", now=later
        )
    elif moment > timezone.now() - timedelta(days=10) and fate < 0.55:
        return  # recent ones wait in the agents' queue, requested
    elif moment > timezone.now() - timedelta(days=10) and fate < 0.8:
        redemptions.redemption_approve(redemption=redemption, actor=actor, now=later)
    elif fate < 0.97 or moment < timezone.now() - timedelta(days=14):
        redemptions.redemption_approve(redemption=redemption, actor=actor, now=later)
        redemptions.redemption_fulfil(
            redemption=redemption,
            actor=actor,
            now=later,
            shipping_note="Sent by tracked post, parcel DEMO-" + str(redemption.pk),
        )
    elif fate < 0.985:
        redemptions.redemption_approve(redemption=redemption, actor=actor, now=later)
