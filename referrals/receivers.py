"""How the referrals app hears of new members and purchases (connected in apps.ready).

Loyalty never imports this app; it sends `member_joined` and `activity_posted`
and these receivers act on them, inside the sender's transaction.
"""

from __future__ import annotations

import logging

from django.db import transaction

from loyalty.models import PURCHASE
from referrals import services
from referrals.models import DeviceSighting, Referral

logger = logging.getLogger(__name__)


def on_member_joined(sender, *, member, channel, referral_code, request_meta, **kwargs) -> None:
    """Remember the new member's browser; attribute the referral when a code came with the sign-up.

    A bad code raises ApplicationError(field="referral_code"): the sign-up is
    refused and rolled back, and the portal or API shows the error on the field.
    """
    meta = request_meta or {}
    services.sighting_record(
        member=member,
        device_id=meta.get("device_id") or "",
        ip=meta.get("ip"),
        context=DeviceSighting.Context.SIGNUP,
    )
    if referral_code:
        channel = channel if channel in Referral.Channel.values else Referral.Channel.PORTAL
        services.referral_attribute(referee=member, code=referral_code, channel=channel, request_meta=meta)


def on_activity_posted(sender, *, member, code, amount, occurred_at, reference, run=None, **kwargs) -> None:
    """A purchase may qualify the member's pending referral. Never breaks the purchase itself:
    any failure here is logged and undone on its own savepoint, and the purchase stands."""
    if code != PURCHASE or amount is None:
        return
    if run is not None:
        return  # on_activity_batch_members found no pending referral for this member
    referral = Referral.objects.filter(referee=member, status=Referral.Status.PENDING).only("pk").first()
    if referral is None:
        return
    try:
        with transaction.atomic():
            services.referral_qualify(
                referral=referral, amount=amount, occurred_at=occurred_at, reference=reference
            )
    except Exception:
        logger.exception("Referral %s: qualification failed; the purchase stands", referral.pk)


def on_activity_batch_members(sender, *, members, **kwargs) -> set[int]:
    """Members with a pending referral: their purchases may qualify it (and post its rewards),
    so the chunk posts their activities one by one."""
    return set(
        Referral.objects.filter(referee__in=members, status=Referral.Status.PENDING).values_list(
            "referee_id", flat=True
        )
    )
