"""`manage.py send_webhooks`: deliver the webhook deliveries due now (first tries and retries)."""

from django.core.management.base import CommandError

from loyalty.management.jobs import JobCommand
from loyalty.notifications.delivery import webhooks_send_due


class Command(JobCommand):
    help = (
        "Send every webhook delivery that is due: new ones, and failed ones whose backoff has passed. "
        "Safe to run again or alongside itself (each delivery is locked while it is tried)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--limit", type=int, default=500, help="At most this many deliveries (default 500)."
        )

    def handle(self, *args, **options):
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1.")
        counts = webhooks_send_due(limit=options["limit"])
        self.stdout.write(f"Tried {counts['tried']} deliveries, {counts['delivered']} delivered.")
