"""Fraud signals of a referral: each a kind, a weight from the program's policy and a reason an agent reads.

The score is the sum of the weights found; at or above the policy's threshold
the rewards are held for review. Everything here reads, nothing writes, and
the number of queries does not depend on how many referrals a referrer has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from loyalty.models import Member
from referrals.models import DeviceSighting, Referral, ReferralPolicy, ReferralSignal

Kind = ReferralSignal.Kind

# Providers that ignore dots in the local part (and alias one domain to another).
DOT_BLIND_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}
# Providers that deliver "name+anything@" to "name@".
PLUS_ADDRESS_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "icloud.com",
        "me.com",
        "fastmail.com",
        "protonmail.com",
        "proton.me",
    }
)
# A small built-in list of disposable-address domains; a signal, not a ban.
THROWAWAY_DOMAINS = frozenset(
    {
        "mailinator.com",
        "guerrillamail.com",
        "sharklasers.com",
        "10minutemail.com",
        "tempmail.com",
        "temp-mail.org",
        "yopmail.com",
        "trashmail.com",
        "getnada.com",
        "dispostable.com",
        "maildrop.cc",
        "throwawaymail.com",
        "fakeinbox.com",
        "discard.email",
        "mintemail.com",
    }
)
# Phones are compared on their last digits, so "+33 6 12 34 56 78" and "06 12 34 56 78" match.
PHONE_DIGITS_COMPARED = 9
PHONE_MIN_DIGITS = 7


def normalise_email(email: str) -> str:
    """The mailbox an address reaches: lower case; plus-suffix and dots dropped where the provider does."""
    email = (email or "").strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or not local:
        return email
    if domain in PLUS_ADDRESS_DOMAINS:
        local = local.split("+", 1)[0]
    if domain in DOT_BLIND_DOMAINS:
        local = local.replace(".", "")
        domain = DOT_BLIND_DOMAINS[domain]
    return f"{local}@{domain}"


def phone_key(phone: str) -> str:
    """The digits a phone is compared by ("" when too short to mean anything)."""
    digits = re.sub(r"\D", "", phone or "")
    if len(digits) < PHONE_MIN_DIGITS:
        return ""
    return digits[-PHONE_DIGITS_COMPARED:]


def email_domain(email: str) -> str:
    return (email or "").strip().lower().rpartition("@")[2]


@dataclass(frozen=True)
class Finding:
    kind: str
    weight: int
    reason: str


# How far up the referrer's chain (who referred them, who referred that member...) a ring is looked
# for: a longer one is too long a game to be worth playing, and the bound keeps the walk finite.
RING_DEPTH = 10


def _ring(referee, referrer) -> list[str] | None:
    """The membership numbers from the referee down the referrals to the referrer, when the
    referee is up the referrer's chain (who referred them, who referred that member...); None
    when not. One query, two when there is a ring."""
    table = Referral._meta.db_table
    with connection.cursor() as cursor:
        # A member is referred once at most (referee is one-to-one), so the chain is a path.
        cursor.execute(
            f"""
            WITH RECURSIVE chain (member_id, depth) AS (
                SELECT referrer_id, 1 FROM {table} WHERE referee_id = %s
                UNION ALL
                SELECT r.referrer_id, chain.depth + 1 FROM {table} r
                JOIN chain ON r.referee_id = chain.member_id
                WHERE chain.depth < %s
            )
            SELECT member_id FROM chain ORDER BY depth
            """,
            [referrer.pk, RING_DEPTH],
        )
        chain = [member_id for (member_id,) in cursor.fetchall()]
    if referee.pk not in chain:
        return None
    path = [*reversed(chain[: chain.index(referee.pk) + 1]), referrer.pk]
    numbers = dict(Member.objects.filter(pk__in=path).values_list("pk", "membership_number"))
    return [numbers[pk] for pk in path]


def _weight(policy: ReferralPolicy, kind: str) -> int:
    return getattr(policy, f"weight_{kind}")


def fraud_findings(
    *, referral: Referral, policy: ReferralPolicy, now: datetime | None = None
) -> list[Finding]:
    """Every signal that fires for `referral` (weight 0 signals are switched off and left out)."""
    now = now or timezone.now()
    referrer, referee = referral.referrer, referral.referee
    found: list[Finding] = []

    def add(kind: str, reason: str) -> None:
        weight = _weight(policy, kind)
        if weight:
            found.append(Finding(kind=kind, weight=weight, reason=reason[:300]))

    if referee.email and normalise_email(referee.email) == normalise_email(referrer.email):
        add(
            Kind.SELF_EMAIL,
            f"The referee's email {referee.email} reaches the same mailbox as the referrer's "
            f"{referrer.email} ({normalise_email(referee.email)}).",
        )
    if phone_key(referee.phone) and phone_key(referee.phone) == phone_key(referrer.phone):
        add(Kind.SELF_PHONE, f"The referee's phone {referee.phone} is the referrer's ({referrer.phone}).")
    domain = email_domain(referee.email)
    if domain in THROWAWAY_DOMAINS:
        add(Kind.THROWAWAY_EMAIL, f"The referee signed up with a throwaway address at {domain}.")

    device, ip = referral.signup_device_id, referral.signup_ip
    window = timedelta(hours=policy.ip_window_hours)
    signed_up = referral.signed_up_at
    # The referrer's own browsers first; then the other referees of the program.
    sighting = (
        DeviceSighting.objects.filter(member=referrer, device_id=device).order_by("seen_at").first()
        if device
        else None
    )
    if sighting is not None:
        add(
            Kind.SHARED_DEVICE,
            f"The referee signed up from a browser the referrer used on {sighting.seen_on:%Y-%m-%d}.",
        )
    elif device:
        other = (
            Referral.objects.filter(program_id=referral.program_id, signup_device_id=device)
            .exclude(pk=referral.pk)
            .select_related("referee")
            .first()
        )
        if other is not None:
            add(
                Kind.SHARED_DEVICE,
                f"Another referee ({other.referee.membership_number}) signed up from the same browser.",
            )
    if ip:
        near = Q(seen_at__gte=signed_up - window, seen_at__lte=signed_up + window)
        referrer_ip = DeviceSighting.objects.filter(near, member=referrer, ip=ip).exists()
        sibling_ip = (
            Referral.objects.filter(
                referrer=referrer,
                signup_ip=ip,
                signed_up_at__gte=signed_up - window,
                signed_up_at__lte=signed_up + window,
            )
            .exclude(pk=referral.pk)
            .exists()
        )
        if referrer_ip or sibling_ip:
            who = "the referrer" if referrer_ip else "another referee of the same referrer"
            add(
                Kind.SHARED_IP,
                f"Signed up from {ip}, an address {who} used within {policy.ip_window_hours} hours "
                "(weak on its own: offices and homes share addresses).",
            )

    tz = referral.program.tz
    local_day = timezone.localtime(signed_up, tz).date()
    day_start = timezone.make_aware(datetime.combine(local_day, datetime.min.time()), tz)
    same_day = Referral.objects.filter(
        referrer=referrer, signed_up_at__gte=day_start, signed_up_at__lt=day_start + timedelta(days=1)
    ).count()
    if same_day > policy.velocity_per_day:
        add(
            Kind.VELOCITY,
            f"The referrer brought {same_day} sign-ups on {local_day:%Y-%m-%d} "
            f"(more than {policy.velocity_per_day} a day).",
        )

    ring = _ring(referee, referrer)
    if ring is not None and len(ring) == 2:
        add(Kind.CIRCULAR, "The referee had referred the referrer: each referred the other.")
    elif ring is not None:
        add(
            Kind.CIRCULAR,
            f"The referee is up the referrer's own chain of referrals ({' → '.join(ring)}): "
            "the referrals go round in a ring.",
        )

    local_now = timezone.localtime(now, tz)
    month_start = local_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    rewarded = Referral.objects.filter(referrer=referrer, status=Referral.Status.REWARDED).exclude(
        pk=referral.pk
    )
    counts = rewarded.aggregate(
        lifetime=Count("id"), month=Count("id", filter=Q(rewarded_at__gte=month_start))
    )
    if policy.cap_per_month is not None and counts["month"] >= policy.cap_per_month:
        add(
            Kind.CAP,
            f"The referrer already has {counts['month']} rewarded referrals this month "
            f"(cap {policy.cap_per_month}).",
        )
    elif policy.cap_lifetime is not None and counts["lifetime"] >= policy.cap_lifetime:
        add(
            Kind.CAP,
            f"The referrer already has {counts['lifetime']} rewarded referrals (lifetime cap "
            f"{policy.cap_lifetime}).",
        )
    return found
