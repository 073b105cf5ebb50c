"""Writes of the API app: keys (create, revoke, mark used) and members' profile changes."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone

from loyalty.api.models import ApiKey, hash_key
from loyalty.errors import ApplicationError
from loyalty.models import Member, Program

LAST_USED_RESOLUTION = timedelta(minutes=1)
PROFILE_FIELDS = ("first_name", "last_name", "email", "phone", "birth_date")


def api_key_create(
    *, program: Program, name: str, created_by=None, rate_limit: str = ""
) -> tuple[ApiKey, str]:
    """A new key for `program`; returns the key and its raw value, which is never stored or shown again."""
    name = (name or "").strip()
    if not name:
        raise ApplicationError("A key needs a name.", field="name")
    if ApiKey.objects.filter(program=program, name=name).exists():
        raise ApplicationError(f"Program {program.slug} already has a key named {name!r}.", field="name")
    raw, prefix, hashed = ApiKey.generate()
    key = ApiKey(program=program, name=name, prefix=prefix, hashed_key=hashed, created_by=created_by)
    if rate_limit:
        key.rate_limit = rate_limit
    key.full_clean()
    key.save()
    return key, raw


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def api_key_authenticate(*, raw: str) -> ApiKey | None:
    """The active key matching `raw`, or None. Marks it used (at most once a minute, to spare writes)."""
    prefix = raw.split(".", 1)[0]
    key = ApiKey.objects.select_related("program").filter(prefix=prefix).first()
    if key is None or key.revoked_at is not None or not key.program.is_active:
        return None
    import hmac

    if not hmac.compare_digest(key.hashed_key, hash_key(raw)):
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        # last_used_at is left out of the key's history, so this plain UPDATE loses nothing.
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def member_profile_update(*, member: Member, changes: dict) -> Member:
    """Change a member's profile fields (names, email, phone, birth date); validates like a form."""
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise ApplicationError(f"{sorted(unknown)[0]} cannot be changed here.", field=sorted(unknown)[0])
    for name, value in changes.items():
        setattr(member, name, value)
    try:
        member.full_clean()
    except ValidationError as error:
        field, messages = next(iter(error.message_dict.items()))
        raise ApplicationError(messages[0], field=field) from None
    member.save(update_fields=list(changes))
    return member
