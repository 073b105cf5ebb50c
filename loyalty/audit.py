"""Who made a change when no person is logged in: a job, a command, an API key, an import.

django-simple-history attributes a change to the request's user. Work outside a
request runs inside `acting_as("job:expire_points")` (Celery tasks get it from
config.celery_app); every history row written meanwhile carries that label in
`history_change_reason`, unless the code gave a reason of its own, so the audit
browser can say which job, key or import made the change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_acting_as: ContextVar[str | None] = ContextVar("loyalty_audit_acting_as", default=None)


@contextmanager
def acting_as(label: str) -> Iterator[None]:
    """Label the history written inside the block: "job:<name>", "command:<name>", "api:<key>"..."""
    token = _acting_as.set(label)
    try:
        yield
    finally:
        _acting_as.reset(token)


def current_label() -> str | None:
    return _acting_as.get()


def label_history_record(sender, history_instance, **kwargs) -> None:
    """pre_create_historical_record receiver: stamp the acting job on the history row."""
    label = _acting_as.get()
    if label and not history_instance.history_change_reason:
        history_instance.history_change_reason = label[:100]
