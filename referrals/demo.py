"""The referrals app's part of seed_demo, called after the programs and members exist.

Each program gets a policy, every member a code, share-link clicks, and referral
trees (a few members bring several friends, some friends bring their own) in
every state: pending, rewarded, held with fraud signals (a shared browser and
address, a circular pair) and rejected. Rows that are not points are bulk
inserted; rewards go through the ledger, posted at seeding time so each
account's entries stay in time order. Deterministic (seeded random) and
idempotent: a program that already has a policy is left unchanged.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from loyalty.models import Member
from referrals import services
from referrals.models import DeviceSighting, Referral, ReferralClick, ReferralCode, ReferralPolicy

POLICIES = {
    "bean-there": {
        "referrer_points": 200,
        "referee_points": 100,
        "min_purchase_amount": Decimal("9.00"),
        "window_days": 30,
    },
    "skyhigh": {
        "referrer_points": 2500,
        "referee_points": 1000,
        "min_purchase_amount": Decimal("400.00"),
        "window_days": 60,
    },
}
REFEREE_SHARE = 0.18  # of a program's members, referred by someone who joined before them
HELD_SHARE = 0.12
REJECTED_SHARE = 0.08
USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/126.0 Mobile",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
)


def seed(*, programs, months: int, log) -> None:
    """Add this app's demo data to the seeded programs; a second run changes nothing."""
    for slug, program in programs.items():
        # Decisions are made by one of the program's own agents.
        agent = program.staff.filter(is_superuser=False).order_by("username").first()
        if ReferralPolicy.objects.filter(program=program).exists():
            log(f"{program.name}: referrals already seeded, left unchanged.")
            continue
        with transaction.atomic():
            rng = random.Random(f"referrals-{slug}")
            counts = _seed_program(program, POLICIES.get(slug, {}), rng=rng, agent=agent)
        log(f"{program.name}: referral policy, codes and {counts} referrals.")


def _ip(rng: random.Random) -> str:
    return f"198.51.100.{rng.randint(2, 254)}"


def _device(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _joined_at(member: Member, rng: random.Random) -> datetime:
    local = datetime.combine(member.joined_on, time(hour=rng.randint(8, 21), minute=rng.randint(0, 59)))
    return timezone.make_aware(local, member.program.tz).astimezone(UTC)


def _seed_program(program, values: dict, *, rng: random.Random, agent) -> int:
    ReferralPolicy.objects.create(program=program, **values)
    members = list(
        Member.objects.filter(program=program).select_related("program").order_by("joined_on", "id")
    )
    if len(members) < 4:
        return 0
    # One code per member, unique across the site (a clash draws again).
    taken = set(ReferralCode.objects.values_list("code", flat=True))
    codes = []
    for member in members:
        code = services._new_code(member, rng)
        while code in taken:
            code = services._new_code(member, rng)
        taken.add(code)
        codes.append(
            ReferralCode(program=program, member=member, code=code, created_at=_joined_at(member, rng))
        )
    bulk_create_with_history(codes, ReferralCode, batch_size=500)
    code_of = {code.member_id: code for code in ReferralCode.objects.filter(program=program)}

    # Referral trees: referees are drawn among members who joined after their referrer; a few
    # "ambassadors" bring many friends, and some referees bring friends of their own.
    portal_member = Member.objects.filter(program=program, user__username="member").first()
    ambassadors = members[: max(2, len(members) // 40)]
    if portal_member is not None and portal_member not in ambassadors:
        ambassadors.append(portal_member)
    referred: dict[int, Member] = {}  # referee id -> referrer
    wanted = max(3, int(len(members) * REFEREE_SHARE))
    for index, member in enumerate(members[1:], start=1):
        if len(referred) >= wanted:
            break
        if rng.random() > 0.35:
            continue
        earlier = members[:index]
        pool = [m for m in earlier if m.pk in referred] if rng.random() < 0.3 else []
        referrer = rng.choice(pool or [a for a in ambassadors if a.joined_on <= member.joined_on] or earlier)
        if referrer.pk != member.pk:
            referred[member.pk] = referrer
    by_id = {m.pk: m for m in members}

    clicks, referrals, sightings, last_click = [], [], [], []
    for referee_id, referrer in referred.items():
        referee = by_id[referee_id]
        signed_up = _joined_at(referee, rng)
        device, ip = _device(rng), _ip(rng)
        suspicious = rng.random() < HELD_SHARE + REJECTED_SHARE
        if suspicious:
            # The friend "joined" from the referrer's own browser and address: held for review.
            sightings.append(
                DeviceSighting(
                    member=referrer,
                    device_id=device,
                    ip=ip,
                    seen_on=timezone.localtime(signed_up - timedelta(hours=2), program.tz).date(),
                    seen_at=signed_up - timedelta(hours=2),
                    context=DeviceSighting.Context.REFERRALS_PAGE,
                )
            )
        agent_of = rng.random()
        for n in reversed(range(rng.randint(1, 3))):
            clicks.append(
                ReferralClick(
                    program=program,
                    code=code_of[referrer.pk],
                    clicked_at=signed_up - timedelta(minutes=5 + 90 * n),
                    ip=ip,
                    user_agent=rng.choice(USER_AGENTS),
                    device_id=device,
                )
            )
        last_click.append(clicks[-1])  # the one right before the sign-up
        referrals.append(
            Referral(
                program=program,
                referrer=referrer,
                referee=referee,
                code=code_of[referrer.pk],
                status=Referral.Status.PENDING,
                channel=Referral.Channel.AGENT if agent_of < 0.05 and agent else Referral.Channel.PORTAL,
                attributed_by=agent if agent_of < 0.05 else None,
                attribution_reason="Told the call centre the code they were given" if agent_of < 0.05 else "",
                signed_up_at=signed_up,
                signup_ip=ip,
                signup_user_agent=rng.choice(USER_AGENTS),
                signup_device_id=device,
                created_at=signed_up,
                updated_at=signed_up,
            )
        )
    # Clicks that led nowhere (most shares do not convert).
    now = timezone.now()
    for _ in range(len(referrals) * 2):
        referrer = rng.choice(ambassadors)
        clicks.append(
            ReferralClick(
                program=program,
                code=code_of[referrer.pk],
                clicked_at=now - timedelta(minutes=rng.randint(10, 60 * 24 * 180)),
                ip=_ip(rng),
                user_agent=rng.choice(USER_AGENTS),
                device_id=_device(rng),
            )
        )
    ReferralClick.objects.bulk_create(clicks, batch_size=500)
    DeviceSighting.objects.bulk_create(sightings, ignore_conflicts=True)
    # Each referral points at the click its browser made last, as a real sign-up would.
    for referral, click in zip(referrals, last_click, strict=True):
        referral.click = click
    bulk_create_with_history(referrals, Referral, batch_size=500)
    saved = list(
        Referral.objects.filter(program=program)
        .select_related("program", "referrer", "referee")
        .order_by("id")
    )
    _circular_pair(program, saved, code_of, rng)

    # Qualification by the referee's real purchases (already in the ledger), then review.
    for referral in Referral.objects.filter(program=program).order_by("id"):
        purchase = services._earlier_qualifying_purchase(referral)
        if purchase is None:
            continue  # still pending: no purchase of the minimum yet
        services.referral_qualify(
            referral=referral,
            amount=Decimal(purchase.breakdown["amount"]),
            occurred_at=purchase.occurred_at,
            reference=purchase.reference,
        )
    held = list(Referral.objects.filter(program=program, status=Referral.Status.HELD).order_by("id"))
    rejected = (
        held[: max(1, int(len(held) * REJECTED_SHARE / (HELD_SHARE + REJECTED_SHARE)))] if agent else []
    )
    for referral in rejected:
        services.referral_reject(
            referral=referral, user=agent, reason="Referrer and friend are the same person (same browser)."
        )
    return Referral.objects.filter(program=program).count()


def _circular_pair(program, saved: list[Referral], code_of, rng) -> None:
    """A referee who "refers" their own referrer back: B was referred by A, then A joins again by B's code.

    A already joined, so this is the agent-attributed kind: A's referral by B (A had none).
    """
    referees = {r.referee_id for r in saved}
    for referral in saved:
        if referral.referrer_id not in referees:
            back = Referral(
                program=program,
                referrer=referral.referee,
                referee=referral.referrer,
                code=code_of[referral.referee_id],
                channel=Referral.Channel.PORTAL,
                signed_up_at=referral.signed_up_at + timedelta(days=1),
                signup_ip=_ip(rng),
                signup_user_agent=rng.choice(USER_AGENTS),
                signup_device_id=_device(rng),
                created_at=referral.signed_up_at + timedelta(days=1),
                updated_at=referral.signed_up_at + timedelta(days=1),
            )
            bulk_create_with_history([back], Referral)
            return
