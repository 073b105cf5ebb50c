from loyalty import ledger
from loyalty.management.jobs import JobCommand, accounts_due, parse_now, positive_int, progress_bar


class Command(JobCommand):
    help = (
        "Make pending points spendable once their waiting period is over, one ledger entry per "
        "account. Safe to rerun: each lot becomes available once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", help="Activate as of this moment (ISO 8601); default: now.")
        parser.add_argument(
            "--batch-size", type=positive_int, default=2000, help="Lots read per batch (default 2000)."
        )

    def handle(self, *args, now=None, batch_size=2000, verbosity=1, **options):
        self.verbosity = verbosity
        moment = parse_now(now)
        with progress_bar(self, total=accounts_due(job="activate", now=moment), unit="account") as bar:
            report = ledger.activate_pending_lots(now=moment, batch_size=batch_size, progress=bar.update)
        self.stdout.write(
            f"Made {report.points} points available in {report.lots} lots of {report.accounts} accounts."
        )
