"""SLA arithmetic: plain Python over datetimes, so every database gives the same answer.

A target is a length of clock time. While a ticket waits on the member the clock
stands still, so a due time is the start plus the target plus every pause that
began before the clock ran out. A pause still running counts up to `now`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from disputes.models import DisputePolicy, Priority

# Used for a program that has no DisputePolicy row; the model's field defaults say the same.
DEFAULT_POLICY = DisputePolicy()

# A ticket is "near due" when its resolution is due within this much clock time.
NEAR_DUE = timedelta(hours=4)

Pause = tuple[datetime, datetime | None]


@dataclass(frozen=True)
class Targets:
    first_response: timedelta
    resolution: timedelta


def targets_for(policy: DisputePolicy, priority: int) -> Targets:
    name = Priority(priority).name.lower()
    return Targets(
        first_response=timedelta(hours=getattr(policy, f"first_response_hours_{name}")),
        resolution=timedelta(hours=getattr(policy, f"resolution_hours_{name}")),
    )


def paused_time(pauses: Iterable[Pause], *, now: datetime, since: datetime | None = None) -> timedelta:
    """Total length of the pauses (a running one up to `now`), counting only time after `since`."""
    total = timedelta()
    for started, ended in pauses:
        end = ended or now
        if since is not None:
            started = max(started, since)
        if end > started:
            total += end - started
    return total


def due_at(*, start: datetime, target: timedelta, pauses: Iterable[Pause], now: datetime) -> datetime:
    """When a target runs out: `start + target`, pushed back by every pause after `start`."""
    return start + target + paused_time(pauses, now=now, since=start)


def working_seconds(*, start: datetime, end: datetime, pauses: Iterable[Pause]) -> int:
    """Clock time from `start` to `end` with the pauses inside it left out, in whole seconds."""
    inside = [(max(s, start), min(e or end, end)) for s, e in pauses]
    elapsed = (end - start) - paused_time(inside, now=end)
    return max(int(elapsed.total_seconds()), 0)
