"""Commands that change data run inside acting_as("command:<name>"), so history names them."""

import importlib
import pkgutil

import pytest
from django.core.management import call_command

from loyalty import ledger
from loyalty.audit import current_label
from loyalty.management.jobs import JobCommand

# Every command of ours is a JobCommand, so whatever history it writes names it; except the
# benchmark, which writes only to a throwaway database of its own.
NOT_JOB_COMMANDS = {"benchmark"}
APPS = ["loyalty", "disputes", "referrals", "agents"]


def _our_commands():
    for app in APPS:
        try:
            package = importlib.import_module(f"{app}.management.commands")
        except ModuleNotFoundError:  # an app without commands
            continue
        for module in pkgutil.iter_modules(package.__path__):
            yield app, module.name


def test_every_command_that_writes_is_a_job_command():
    commands = list(_our_commands())
    assert {"expire_points", "import_transactions", "escalate_disputes", "award_agent_points"} <= {
        name for _, name in commands
    }
    for app, name in commands:
        if name in NOT_JOB_COMMANDS:
            continue
        command = importlib.import_module(f"{app}.management.commands.{name}").Command
        assert issubclass(command, JobCommand), name
        assert command.command_name() == name


@pytest.mark.django_db
def test_the_label_is_set_while_the_command_works_and_cleared_after(monkeypatch):
    seen = []

    def expire(**kwargs):
        seen.append(current_label())
        return ledger.JobReport()

    monkeypatch.setattr(ledger, "expire_due_lots", expire)
    call_command("expire_points", verbosity=0)
    assert seen == ["command:expire_points"]
    assert current_label() is None
