"""Celery beat job of the disputes app; also the `escalate_disputes` command."""

from celery import shared_task

from disputes import services
from loyalty.models import Program


@shared_task(name="disputes.tasks.escalate_overdue_disputes")
def escalate_overdue_disputes(program_id: int | None = None) -> dict:
    """Escalate overdue tickets once each (a second run finds nothing new)."""
    program = None if program_id is None else Program.objects.get(pk=program_id)
    escalated = services.escalate_overdue(program=program)
    return {"escalated": len(escalated), "ids": escalated[:100]}
