"""Shortfalls: points a return could not take back, and an agent's decision on them.

A return that finds the points already spent (and a program that allows no
debt) flags the difference as a `PointsShortfall` (see `earning.purchase_return`).
An agent looks into it, maybe asks for a manual adjustment, and closes the flag
with a note. Resolving does not move points; the ledger is not touched here.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from loyalty.errors import ApplicationError
from loyalty.ledger import Actor
from loyalty.models import PointsShortfall

__all__ = ["ShortfallResult", "shortfall_resolve"]

Status = PointsShortfall.Status
MAX_NOTE_LENGTH = 2000


@dataclass(frozen=True)
class ShortfallResult:
    """The shortfall after the call. `replayed`: it was resolved already, nothing was written."""

    shortfall: PointsShortfall
    replayed: bool = False


def shortfall_resolve(*, shortfall: PointsShortfall, actor: Actor, note: str) -> ShortfallResult:
    """Close an open shortfall with a note saying what was decided.

    Under the row lock, so a double click resolves once: the second call finds it
    resolved and returns it unchanged (`replayed=True`), keeping the first note.
    """
    note = (note or "").strip()
    if not note:
        raise ApplicationError(
            "Say what was decided, for the audit trail.", code="note_required", field="note"
        )
    if len(note) > MAX_NOTE_LENGTH:
        raise ApplicationError(f"A note may have at most {MAX_NOTE_LENGTH} characters.", field="note")
    with transaction.atomic():
        locked = PointsShortfall.objects.select_for_update().get(pk=shortfall.pk)
        if locked.status == Status.RESOLVED:
            return ShortfallResult(shortfall=locked, replayed=True)
        locked.status = Status.RESOLVED
        locked.note = note
        if actor.user is not None:
            locked._history_user = actor.user
        locked.save(update_fields=["status", "note"])
    return ShortfallResult(shortfall=locked)
