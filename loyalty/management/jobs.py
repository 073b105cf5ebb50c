"""Shared bits of the job commands: their base class, the --now and count options, a progress bar."""

import argparse
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from loyalty.audit import acting_as


class JobCommand(BaseCommand):
    """Base of every command that changes data: its work runs inside
    `acting_as("command:<name>")`, so the history it writes names the command as its author
    (there is no request user to attribute it to). The name is the command's module name."""

    def execute(self, *args, **options):
        with acting_as(f"command:{self.command_name()}"):
            return super().execute(*args, **options)

    @classmethod
    def command_name(cls) -> str:
        return cls.__module__.rsplit(".", 1)[-1]


def positive_int(text: str) -> int:
    """An option's whole number of at least 1 (1_000 and 1,000 read as 1000), or a usage error."""
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_now(value: str | None) -> datetime:
    if not value:
        return timezone.now()
    moment = parse_datetime(value)
    if moment is None:
        raise CommandError(f"--now {value!r} is not a date-time like 2026-01-31T23:00:00+00:00.")
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment


def progress_bar(command, *, total: int, unit: str) -> tqdm:
    # Quiet when not a terminal or verbosity 0, so cron mail and CI logs stay short.
    disable = command.verbosity == 0 or not command.stdout.isatty()
    return tqdm(total=total, unit=unit, disable=disable, file=command.stderr._out)


def accounts_due(*, job: str, now: datetime) -> int:
    """How many accounts a job will touch, for the progress bar's total."""
    from loyalty.models import PointLot

    if job == "expire":
        lots = PointLot.objects.filter(pending=False, remaining__gt=0, expires_at__lte=now)
    else:
        lots = PointLot.objects.filter(pending=True, remaining__gt=0, available_from__lte=now)
    return lots.values("account_id").distinct().count()


def program_option(slug: str | None, *, active_only: str = ""):
    """The program a --program SLUG option names (None when not given), or a CommandError.

    With `active_only`, an inactive program is refused with that explanation.
    """
    from loyalty.models import Program

    if not slug:
        return None
    program = Program.objects.filter(slug=slug).first()
    if program is None:
        raise CommandError(f"No program with slug {slug!r}.")
    if active_only and not program.is_active:
        raise CommandError(f"Program {slug!r} is inactive; {active_only}.")
    return program
