from loyalty import milestones
from loyalty.management.jobs import JobCommand, parse_now, program_option, progress_bar


class Command(JobCommand):
    help = (
        "Pay the birthday, membership-anniversary and lifetime-points milestone bonuses due now, "
        "by each program's local date. Safe to run any number of times, also twice at once: "
        "each bonus is paid once per member per year (lifetime milestones once ever)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", help="Pay what is due at this moment (ISO 8601); default: now.")
        parser.add_argument("--program", help="Only this program (its slug); default: every active one.")

    def handle(self, *args, now=None, program=None, verbosity=1, **options):
        self.verbosity = verbosity
        moment = parse_now(now)
        scope = program_option(program, active_only="it pays no milestones")
        # The total is unknown before the run (one query per rule finds the members).
        with progress_bar(self, total=None, unit="bonus") as bar:
            report = milestones.milestones_pay(now=moment, program=scope, progress=bar.update)
        self.stdout.write(
            f"Paid {report.birthday} birthday, {report.anniversary} anniversary and {report.lifetime} "
            f"lifetime milestone bonuses: {report.points} points."
        )
        if report.already_paid:
            self.stdout.write(f"{report.already_paid} were already paid by another run.")
