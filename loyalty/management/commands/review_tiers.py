from loyalty import tier_review
from loyalty.management.jobs import JobCommand, parse_now, program_option, progress_bar
from loyalty.models import Member, Program


class Command(JobCommand):
    help = (
        "The periodic tier review: give every member the tier their qualifying points over the "
        "program's rolling window earn, downgrades included (they happen only here). Each change "
        "is recorded with its reason and the member is notified. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", help="Review as of this moment (ISO 8601); default: now.")
        parser.add_argument("--program", help="Only this program (its slug); default: every active one.")

    def handle(self, *args, now=None, program=None, verbosity=1, **options):
        self.verbosity = verbosity
        moment = parse_now(now)
        scope = program_option(program, active_only="its tiers are not reviewed")
        # The members the review reads: not closed, in active programs that have tiers.
        members = Member.objects.filter(
            program__is_active=True, program__in=Program.objects.filter(tiers__isnull=False)
        ).exclude(status=Member.Status.CLOSED)
        if scope is not None:
            members = members.filter(program=scope)
        with progress_bar(self, total=members.count(), unit="member") as bar:
            report = tier_review.tiers_review_all(now=moment, program=scope, progress=bar.update)
        self.stdout.write(
            f"Reviewed {report.members} members: {report.upgrades} upgraded, {report.downgrades} downgraded."
        )
