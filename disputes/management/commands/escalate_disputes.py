from disputes import services
from loyalty.management.jobs import JobCommand, parse_now, program_option


class Command(JobCommand):
    help = (
        "Escalate every dispute past its first-response or resolution target: priority up one step, "
        "status escalated, an email to the program's supervisors. Each ticket is escalated once, "
        "however often this runs; tickets waiting on the member are paused and never overdue."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", help="Judge overdue as of this moment (ISO 8601); default: now.")
        parser.add_argument("--program", help="Only this program (its slug); default: every program.")

    def handle(self, *args, now=None, program=None, verbosity=1, **options):
        self.verbosity = verbosity
        moment = parse_now(now)
        scope = program_option(program)
        escalated = services.escalate_overdue(now=moment, program=scope)
        self.stdout.write(f"Escalated {len(escalated)} overdue dispute{'s' if len(escalated) != 1 else ''}.")
