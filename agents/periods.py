"""Periods the agents app scores: months ("2026-10") and the leaderboard windows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.utils import timezone

from loyalty.errors import ApplicationError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    day = month_start(day)
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def previous_month(day: date) -> date:
    return month_start(month_start(day) - timedelta(days=1))


def parse_month(value: str) -> date:
    """ "2026-10" -> 1 Oct 2026; anything else is an ApplicationError on the field `period`."""
    match = _MONTH.match((value or "").strip())
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
        raise ApplicationError(f"{value!r} is not a month like 2026-10.", code="bad_period", field="period")
    return date(int(match.group(1)), int(match.group(2)), 1)


def month_closes_at(month: date, tz) -> datetime:
    """The moment a month is over in a time zone: the next month's first midnight there."""
    return datetime.combine(next_month(month), time.min, tzinfo=tz)


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    start: date
    end: date  # exclusive

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)


THIS_MONTH, LAST_MONTH, LAST_7_DAYS = "this_month", "last_month", "last_7_days"
WINDOW_CHOICES = [(THIS_MONTH, "This month"), (LAST_MONTH, "Last month"), (LAST_7_DAYS, "Last 7 days")]


def window(key: str, *, today: date | None = None) -> Window:
    """A leaderboard window ending with `today` (this month so far, last month, the last 7 days)."""
    today = today or timezone.localdate()
    label = dict(WINDOW_CHOICES)[key]
    if key == THIS_MONTH:
        return Window(key, label, month_start(today), today + timedelta(days=1))
    if key == LAST_MONTH:
        start = previous_month(today)
        return Window(key, label, start, next_month(start))
    if key == LAST_7_DAYS:
        return Window(key, label, today - timedelta(days=6), today + timedelta(days=1))
    raise ApplicationError(f"Unknown period {key!r}.", field="period")
