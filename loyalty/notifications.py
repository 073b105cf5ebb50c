"""Member notifications: the interface the rest of the code calls.

Delivery (email, the message log, opt-outs) arrives with the notifications
issue; until then handlers register here. Notifications go out only after the
transaction that caused them commits, so a rolled-back posting notifies nobody.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

Handler = Callable[..., None]
_handlers: list[Handler] = []


def register(handler: Handler) -> Handler:
    _handlers.append(handler)
    return handler


def notify(*, member, kind: str, context: dict, dedupe_key: str) -> None:
    """Tell a member about `kind` (tier_changed, redemption_status, ...) once per `dedupe_key`."""

    def send():
        for handler in list(_handlers):
            handler(member=member, kind=kind, context=context, dedupe_key=dedupe_key)

    transaction.on_commit(send)
