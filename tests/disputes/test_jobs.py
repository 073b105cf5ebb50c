"""The escalation job: the Celery task and the command."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from disputes.models import Dispute, Priority
from disputes.tasks import escalate_overdue_disputes
from tests.disputes.conftest import T0, open_ticket

pytestmark = pytest.mark.django_db


def test_the_command_escalates_once_and_says_how_many(member_a):
    late = open_ticket(member_a, priority=Priority.HIGH)
    out = StringIO()
    later = (T0 + timedelta(hours=9)).isoformat()
    call_command("escalate_disputes", "--now", later, stdout=out)
    call_command("escalate_disputes", "--now", later, stdout=out)
    assert out.getvalue().splitlines() == ["Escalated 1 overdue dispute.", "Escalated 0 overdue disputes."]
    escalated = Dispute.objects.get(pk=late.pk)
    assert escalated.status == Dispute.Status.ESCALATED
    # The history names the command as the author.
    assert escalated.history.first().history_change_reason == "command:escalate_disputes"


def test_the_command_refuses_bad_input(db):
    with pytest.raises(CommandError, match="not a date-time"):
        call_command("escalate_disputes", "--now", "yesterday")
    with pytest.raises(CommandError, match="No program"):
        call_command("escalate_disputes", "--program", "nope")


def test_the_task_takes_a_program_id_and_is_idempotent(member_a, member_of_b):
    open_ticket(member_a, priority=Priority.URGENT, now=T0 - timedelta(days=30))
    open_ticket(member_of_b, priority=Priority.URGENT, now=T0 - timedelta(days=30))
    first = escalate_overdue_disputes.delay(program_id=member_a.program_id).get()
    assert first["escalated"] == 1
    assert escalate_overdue_disputes.delay(program_id=member_a.program_id).get()["escalated"] == 0
    assert escalate_overdue_disputes.delay().get()["escalated"] == 1  # program B's
