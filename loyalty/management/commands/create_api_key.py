"""`manage.py create_api_key --program <slug> --name <name>`: a new API key, printed once."""

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from loyalty.api.services import api_key_create
from loyalty.errors import ApplicationError
from loyalty.management.jobs import JobCommand, program_option


class Command(JobCommand):
    help = (
        "Create an API key for a program and print it. The key is stored hashed and shown only now: "
        "keep it in the client system's secrets. Revoke it in the admin (API keys)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--program", required=True, help="Slug of the program the key works on.")
        parser.add_argument("--name", default="default", help="Who uses the key (unique per program).")
        parser.add_argument(
            "--rate", default="", help="Requests allowed, e.g. 600/min (the default) or 20/s."
        )

    def handle(self, *args, **options):
        program = program_option(options["program"], active_only="it takes no API calls")
        try:
            key, raw = api_key_create(program=program, name=options["name"], rate_limit=options["rate"])
        except ApplicationError as error:
            raise CommandError(error.message) from None
        except ValidationError as error:  # full_clean, e.g. a rate like "often"
            raise CommandError("; ".join(error.messages)) from None
        self.stderr.write(f"API key {key.name!r} for {program.slug} (shown once; store it safely):")
        self.stdout.write(raw)
