"""Writes about programs, members and back-office users (points go through `loyalty.ledger`)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from loyalty import ledger, signals
from loyalty.models import Member, Program
from loyalty.numbers import new_membership_number
from loyalty.roles import GROUP_NAMES, Role

User = get_user_model()


@transaction.atomic
def member_create(
    *,
    program: Program,
    first_name: str,
    last_name: str,
    email: str = "",
    phone: str = "",
    membership_number: str | None = None,
    user=None,
    channel: str = "agent",
    referral_code: str = "",
    request_meta: dict | None = None,
    **fields,
) -> Member:
    """Create a member with an empty points account; validates like a form would.

    Other apps hear of the new member through `signals.member_joined` (the
    referral code goes to the referrals app that way) and may refuse it.
    """
    member = Member(
        program=program,
        first_name=first_name,
        last_name=last_name,
        email=email,
        phone=phone,
        membership_number=membership_number or _unused_membership_number(),
        user=user,
        **fields,
    )
    member.full_clean()
    member.save()
    ledger.open_account(member=member)
    signals.member_joined.send(
        sender=Member,
        member=member,
        channel=channel,
        referral_code=(referral_code or "").strip(),
        request_meta=request_meta or {},
    )
    return member


def _unused_membership_number() -> str:
    while True:
        number = new_membership_number()
        if not Member.objects.filter(membership_number=number).exists():
            return number


@transaction.atomic
def staff_user_create(
    *, username: str, role: Role, password: str, programs=(), email: str = "", **fields
) -> User:
    """A back-office user in the role's group, assigned to programs (admins see all)."""
    if role == Role.MEMBER:
        raise ValueError("Members are created with member_create and a linked user.")
    user = User.objects.create_user(
        username=username,
        password=password,
        email=email,
        is_staff=True,  # agents work in the Django admin too
        is_superuser=role == Role.ADMIN,
        **fields,
    )
    user.groups.add(Group.objects.get(name=GROUP_NAMES[role]))
    for program in programs:
        program.staff.add(user)
    return user
