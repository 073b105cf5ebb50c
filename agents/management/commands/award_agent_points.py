from django.core.management.base import CommandError

from agents import services
from agents.periods import parse_month
from loyalty.errors import ApplicationError
from loyalty.management.jobs import JobCommand, parse_now


class Command(JobCommand):
    help = (
        "Award agents their performance points for a closed month: each agent's KPIs for the month "
        "scored by the rules in force then. Safe to run again: it posts only differences (a late KPI "
        "correction), never the same award twice. Refuses a month that is not over in every program."
    )

    def add_arguments(self, parser):
        parser.add_argument("--period", required=True, help="The month to award, like 2026-10.")
        parser.add_argument("--now", help="Judge 'closed' at this moment (ISO 8601); default: now.")

    def handle(self, *args, period, now=None, **options):
        try:
            month = parse_month(period)
            report = services.awards_post(month=month, now=parse_now(now))
        except ApplicationError as error:
            raise CommandError(error.message) from error
        self.stdout.write(
            f"{month:%Y-%m}: {report.entries} entries posted ({report.corrections} corrections) for "
            f"{report.agents} agents, {report.points:+d} points; {report.unchanged} already up to date."
        )
