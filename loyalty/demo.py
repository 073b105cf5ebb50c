"""The demo data set: users for every role, two programs, members with a year of history.

Everything goes through the same services and ledger as real traffic, so the
demo reconciles like production would. Deterministic (seeded random) and
idempotent: a second run finds the demo in place and changes nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from loyalty import ledger
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, Member, Program
from loyalty.roles import Role
from loyalty.services import member_create, staff_user_create

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
    points_per_visit: tuple[int, int]
    visits_per_month: tuple[int, int]
    reward_costs: tuple[int, ...]


PROGRAMS = (
    ProgramSpec(
        slug="bean-there",
        name="Bean There Coffee",
        members=300,
        fields={
            "currency": "EUR",
            "time_zone": "Europe/Berlin",
            "expiry_policy": Program.ExpiryPolicy.MONTHS_AFTER_EARN,
            "expiry_months": 6,
            "pending_days": 0,
            "negative_balance_policy": Program.NegativeBalancePolicy.FORBID,
            "adjustment_approval_threshold": 200,
            "point_value": "0.0100",
        },
        points_per_visit=(5, 40),
        visits_per_month=(0, 6),
        reward_costs=(100, 150, 250),
    ),
    ProgramSpec(
        slug="skyhigh",
        name="SkyHigh Miles",
        members=250,
        fields={
            "currency": "USD",
            "time_zone": "America/New_York",
            "expiry_policy": Program.ExpiryPolicy.END_OF_NTH_YEAR,
            "expiry_years": 1,
            "pending_days": 14,
            "negative_balance_policy": Program.NegativeBalancePolicy.ALLOW_DEBT,
            "adjustment_approval_threshold": 2000,
            "point_value": "0.0120",
        },
        points_per_visit=(300, 4000),
        visits_per_month=(0, 2),
        reward_costs=(5000, 12500, 25000),
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
    return logins


def _program(spec: ProgramSpec) -> Program:
    program, _ = Program.objects.get_or_create(slug=spec.slug, defaults={"name": spec.name, **spec.fields})
    return program


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
    month_start = start
    while month_start < now:
        month_end = min(month_start + timedelta(days=30), now)
        with transaction.atomic():
            for member, joined in members:
                if joined < month_end:
                    _member_month(spec, member, max(joined, month_start), month_end, rng, seeder)
            ledger.activate_pending_lots(now=month_end)
            ledger.expire_due_lots(now=month_end)
        month_start = month_end


def _member_month(spec, member, begin: datetime, end: datetime, rng, actor) -> None:
    account = member.account
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
    for moment in moments:
        key = f"demo:{member.membership_number}:{moment.timestamp():.0f}"
        amount = rng.randint(*spec.points_per_visit)
        earned = ledger.credit(
            account=account,
            points=amount,
            reason="Purchase",
            actor=actor,
            idempotency_key=f"{key}:earn",
            source=LedgerEntry.Source.API,
            reference=f"POS-{rng.randint(100000, 999999)}",
            occurred_at=moment,
            breakdown={"base": amount},
            now=moment,
        )
        roll = rng.random()
        if roll < 0.04 and spec.fields["pending_days"]:
            # A returned purchase inside the waiting period takes its points back.
            ledger.reverse(
                entry=earned.entry,
                reason="Purchase returned",
                actor=actor,
                idempotency_key=f"{key}:return",
                source=LedgerEntry.Source.API,
                now=moment + timedelta(minutes=3),
            )
        elif roll < 0.20:
            cost = rng.choice(spec.reward_costs)
            if earned.balance >= cost:
                ledger.debit(
                    account=account,
                    points=cost,
                    reason=f"Reward redeemed ({cost} points)",
                    actor=actor,
                    idempotency_key=f"{key}:redeem",
                    source=LedgerEntry.Source.PORTAL,
                    now=moment + timedelta(minutes=5),
                )
        elif roll < 0.23:
            ledger.credit(
                account=account,
                points=rng.choice((25, 50, 100)) * (10 if spec.slug == "skyhigh" else 1),
                kind=LedgerEntry.Kind.BONUS,
                reason="Welcome back bonus",
                actor=actor,
                idempotency_key=f"{key}:bonus",
                source=LedgerEntry.Source.JOB,
                occurred_at=moment,
                now=moment + timedelta(minutes=1),
            )
