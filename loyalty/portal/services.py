"""Writes the member portal makes for a member: joining and editing their contact details.

Points never move here: redemptions go through loyalty.redemptions, everything
else through loyalty.ledger.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from loyalty.errors import ApplicationError
from loyalty.models import Member, Program
from loyalty.services import member_create

User = get_user_model()

USERNAME_MAX_LENGTH = User._meta.get_field("username").max_length

# Sign-up attempts one address may make per window: generous enough for a shop
# signing customers up on one tablet, low enough to slow a script down.
SIGNUP_ATTEMPTS = getattr(settings, "PORTAL_SIGNUP_ATTEMPTS", 30)
SIGNUP_WINDOW_SECONDS = 3600
SIGNUP_KEY_PREFIX = "portal:signup:"


class EmailTaken(ApplicationError):
    code = "email_taken"
    status = 409


@dataclass(frozen=True)
class SignUp:
    member: Member
    user: object
    # What the member types on the login page: their email, or their membership
    # number when the email already signs in another account (another program's).
    username: str


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def _email_taken(program: Program, email: str, *, exclude_pk: int | None = None) -> bool:
    members = Member.objects.filter(program=program, email__iexact=email)
    if exclude_pk is not None:
        members = members.exclude(pk=exclude_pk)
    return members.exists()


def _validation_error(error: ValidationError) -> ApplicationError:
    field, messages = next(iter(error.message_dict.items()))
    return ApplicationError(" ".join(messages), code="invalid", field=field)


@transaction.atomic
def member_sign_up(
    *,
    program: Program,
    first_name: str,
    last_name: str,
    email: str,
    password: str,
    phone: str = "",
    referral_code: str = "",
    request_meta: dict | None = None,
) -> SignUp:
    """A new member with a portal login, in one transaction.

    The referrals app hears of it through `member_joined` (via member_create) and
    may refuse an unknown code with an ApplicationError(field="referral_code"):
    then neither the login nor the member exists. An email already used in this
    program is refused (`EmailTaken`, field "email").
    """
    email = normalise_email(email)
    # One sign-up at a time per program, so two requests with one email cannot both pass the check.
    Program.objects.select_for_update().filter(pk=program.pk).exists()
    if _email_taken(program, email):
        raise EmailTaken(
            "This email already has a membership here: sign in, or reset your password.", field="email"
        )
    user = _new_user(email=email, password=password, first_name=first_name, last_name=last_name)
    try:
        member = member_create(
            program=program,
            first_name=first_name,
            last_name=last_name,
            email=email,
            phone=phone,
            user=user,
            channel="portal",
            referral_code=referral_code,
            request_meta=request_meta or {},
        )
    except ValidationError as error:
        raise _validation_error(error) from error
    if user.username != email:
        user.username = member.membership_number
        user.save(update_fields=["username"])
    return SignUp(member=member, user=user, username=user.username)


def _new_user(*, email: str, password: str, first_name: str, last_name: str):
    """A login named after the email when it is free; otherwise a placeholder renamed to the number."""
    fields = {
        "email": email,
        "password": password,
        "first_name": first_name[:150],
        "last_name": last_name[:150],
    }
    if len(email) <= USERNAME_MAX_LENGTH and not User.objects.filter(username__iexact=email).exists():
        try:
            with transaction.atomic():
                return User.objects.create_user(username=email, **fields)
        except IntegrityError:
            pass  # taken a moment ago by another sign-up: fall back to the number
    return User.objects.create_user(username=f"signup-{secrets.token_hex(10)}", **fields)


def sign_up_allowed(*, ip: str) -> bool:
    """Count one sign-up attempt from `ip`; False once the address has made too many this hour."""
    key = f"{SIGNUP_KEY_PREFIX}{ip or 'unknown'}"
    if cache.add(key, 1, SIGNUP_WINDOW_SECONDS):
        return True
    try:
        attempts = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, SIGNUP_WINDOW_SECONDS)
        return True
    return attempts <= SIGNUP_ATTEMPTS


EDITABLE_FIELDS = ("first_name", "last_name", "email", "phone")


@transaction.atomic
def member_profile_update(*, member: Member, user, **changes) -> list[str]:
    """Change the member's own contact details; returns the fields that changed.

    Only EDITABLE_FIELDS may change. The history row names `user` (the member).
    The login's email and name follow, so a password reset goes to the new address.
    """
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ApplicationError(f"These details cannot be changed here: {', '.join(sorted(unknown))}.")
    if "email" in changes:
        changes["email"] = normalise_email(changes["email"])
    member = Member.objects.select_for_update().get(pk=member.pk)
    changed = [name for name, value in changes.items() if getattr(member, name) != value]
    if not changed:
        return []
    if (
        "email" in changed
        and changes["email"]
        and _email_taken(member.program, changes["email"], exclude_pk=member.pk)
    ):
        raise EmailTaken("Another membership of this program already uses this email.", field="email")
    for name in changed:
        setattr(member, name, changes[name])
    try:
        member.full_clean()
    except ValidationError as error:
        raise _validation_error(error) from error
    member._history_user = user
    member.save(update_fields=changed)
    login_fields = {
        "email": member.email,
        "first_name": member.first_name[:150],
        "last_name": member.last_name[:150],
    }
    updated = [name for name, value in login_fields.items() if getattr(user, name) != value]
    if updated:
        for name in updated:
            setattr(user, name, login_fields[name])
        user.save(update_fields=updated)
    return changed
