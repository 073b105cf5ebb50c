"""Member notifications: the interface the rest of the code calls.

`notify(member=, kind=, context=, dedupe_key=)` is all a caller needs. It acts
only after the transaction that caused it commits, so a rolled-back posting
notifies nobody. Handlers registered here then run; the notifications app
registers its delivery (`loyalty.notifications.delivery.deliver`): the message
log with its unique dedupe key (a rerun sends nothing twice), the member's
opt-outs, the email, and the program's outbound webhooks.

Kinds in use: tier_changed, redemption_status, points_expiring, dispute_reply,
dispute_resolved, referral_reward (others get a generic email).
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

Handler = Callable[..., None]
_handlers: list[Handler] = []


def register(handler: Handler) -> Handler:
    if handler not in _handlers:
        _handlers.append(handler)
    return handler


def notify(*, member, kind: str, context: dict, dedupe_key: str) -> None:
    """Tell a member about `kind` (tier_changed, redemption_status, ...) once per `dedupe_key`."""

    def send():
        for handler in list(_handlers):
            handler(member=member, kind=kind, context=context, dedupe_key=dedupe_key)

    transaction.on_commit(send)
