import logging

from django.conf import settings
from django.core.management.base import CommandError
from django.test.utils import override_settings

from loyalty.demo import DEMO_PASSWORD, seed_demo
from loyalty.management.jobs import JobCommand


class Command(JobCommand):
    help = (
        "Create the demo: users for every role with a known password, two programs and hundreds of "
        "members with a year of ledger history. Runs only with DEBUG on, or with --force. Running it "
        "again changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--force", action="store_true", help="Seed even though DEBUG is off (never on a live system)."
        )
        parser.add_argument("--months", type=int, default=12, help="Months of history (default 12).")

    def handle(self, *args, force=False, months=12, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo creates users with a known password: run it with DEBUG on or --force."
            )
        if not 1 <= months <= 36:
            raise CommandError("--months must be between 1 and 36.")
        # A year of history sends members thousands of messages (tier changes, redemptions,
        # dispute replies): keep them in the message log and in memory, not on the console,
        # and keep the in-process Celery's line per task out of the output too.
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
        with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
            logins = seed_demo(months=months, log=self.stdout.write)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Demo logins (password for all: {DEMO_PASSWORD}):"))
        for login in logins:
            self.stdout.write(f"  {login.username:<12} {login.role:<11} {login.note}")
