"""Signals other apps hook into, so loyalty never imports them.

`activity_posted` is sent inside the posting's transaction, after the points
(if any) are written and only for a new event, never a replay: a receiver's
writes commit or roll back with the event. Receivers must be idempotent and
must not raise for conditions of their own (log and move on): an exception
undoes the member's posting. Arguments: member, code, amount (Decimal or
None), occurred_at, reference, source, actor, result (the ActivityResult; its
`posting` is None when the event earned nothing), run (None for an activity posted on its own;
the `PostingRun` when it is one of a set-based run of `earning.activities_post`).

`member_joined` is sent by services.member_create inside its transaction, for
every new member: member, channel ("portal", "api", "agent", "import", "demo"),
referral_code ("" when none was given), request_meta (a dict: ip, user_agent,
device_id where known). A receiver may raise ApplicationError to refuse the
sign-up (an unknown referral code, say); the member is then rolled back and
the caller shows the error on its field.

`activity_batch_members` is sent before a chunk of activities is posted
set-based (`earning.activities_post`): the activities' `activity_posted` signals
then come after the whole run of earnings before them is written, not one by
one. A receiver whose `activity_posted` writes for some members (points, say)
returns their ids, and their activities are posted one at a time, exactly as
`activity_post` does: an `activity_posted` with a `run` is for a member no
receiver named. Arguments: members (the chunk's Member objects).
"""

import functools

from django.db import transaction
from django.dispatch import Signal


class PostingRun:
    """The activities of one set-based write: they commit or roll back together.

    A receiver of `activity_posted` that would register an on_commit callback per
    activity can `defer` its item instead: once the run's activities are all
    announced, `handler(items)` is registered once per key, in the same savepoint.
    """

    def __init__(self):
        self._deferred: dict = {}

    def defer(self, key, item, handler) -> None:
        self._deferred.setdefault(key, (handler, []))[1].append(item)

    def close(self) -> None:
        for handler, items in self._deferred.values():
            transaction.on_commit(functools.partial(handler, items))
        self._deferred.clear()


activity_posted = Signal()
member_joined = Signal()
activity_batch_members = Signal()
