from loyalty import ledger
from loyalty.management.jobs import JobCommand, accounts_due, parse_now, positive_int, progress_bar


class Command(JobCommand):
    help = (
        "Expire every points lot whose expiry moment has passed, one ledger entry per account. "
        "Safe to run at any time, twice at once, or again after a crash: each lot expires once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", help="Expire as of this moment (ISO 8601); default: now.")
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=ledger.EXPIRY_BATCH_SIZE,
            help=f"Lots read per batch (default {ledger.EXPIRY_BATCH_SIZE}; "
            f"at most {ledger.PORTABLE_BATCH_SIZE} on databases other than PostgreSQL).",
        )
        parser.add_argument(
            "--workers",
            type=positive_int,
            default=ledger.EXPIRY_WORKERS,
            help=f"Batches run at once, each on a connection of its own (default {ledger.EXPIRY_WORKERS}; "
            "PostgreSQL only, elsewhere one at a time).",
        )

    def handle(
        self,
        *args,
        now=None,
        batch_size=ledger.EXPIRY_BATCH_SIZE,
        workers=ledger.EXPIRY_WORKERS,
        verbosity=1,
        **options,
    ):
        self.verbosity = verbosity
        moment = parse_now(now)
        with progress_bar(self, total=accounts_due(job="expire", now=moment), unit="account") as bar:
            report = ledger.expire_due_lots(
                now=moment, batch_size=batch_size, workers=workers, progress=bar.update
            )
        self.stdout.write(
            f"Expired {-report.points} points in {report.lots} lots of {report.accounts} accounts."
        )
