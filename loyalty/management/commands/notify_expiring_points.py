"""`manage.py notify_expiring_points`: the weekly digest of points expiring within 30 days."""

from loyalty.management.jobs import JobCommand, program_option
from loyalty.notifications.delivery import expiring_points_notify


class Command(JobCommand):
    help = (
        "Tell each active member whose points expire within 30 days, once per member per ISO week: "
        "a second run in the same week sends nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--program", help="Only this program (slug).")

    def handle(self, *args, **options):
        program = program_option(options["program"], active_only="its members get no notices")
        count = expiring_points_notify(program=program)
        self.stdout.write(f"Notified {count} members.")
