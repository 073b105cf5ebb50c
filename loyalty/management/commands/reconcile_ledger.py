from django.core.management.base import CommandError

from loyalty import ledger
from loyalty.management.jobs import JobCommand, program_option


class Command(JobCommand):
    help = (
        "Check every account's balance and pending points against its ledger entries and lots. "
        "Prints each discrepancy and exits non-zero when anything is off."
    )

    def add_arguments(self, parser):
        parser.add_argument("--program", help="Only this program (its slug).")

    def handle(self, *args, program=None, **options):
        scope = program_option(program)
        problems = ledger.reconcile(program=scope)
        for problem in problems:
            self.stdout.write(
                f"account {problem.account_id}: {problem.check}: expected {problem.expected}, "
                f"found {problem.actual}"
            )
        if problems:
            accounts = len({p.account_id for p in problems})
            raise CommandError(f"Reconcile found {len(problems)} problems in {accounts} accounts.")
        self.stdout.write(
            self.style.SUCCESS("Ledger reconciles: every balance matches its entries and lots.")
        )
