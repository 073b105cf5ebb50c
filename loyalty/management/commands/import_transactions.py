"""`manage.py import_transactions FILE --program <slug>`: purchases, activities and returns from CSV."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from django.core.management.base import CommandError
from tqdm import tqdm

from loyalty.imports.engine import ImportFileError, import_create, import_progress, import_run, report_rows
from loyalty.imports.models import ImportBatch
from loyalty.management.jobs import JobCommand, program_option


class Command(JobCommand):
    help = (
        "Import purchases, activities and returns from a CSV file into a program. Columns: "
        "membership_number, type (purchase, return or an activity code), reference, occurred_at "
        "(ISO 8601; without a zone, the program's time zone), amount (purchases and returns), "
        "original_reference (returns). Good rows land, bad rows are reported with their line; "
        "re-importing the same file changes nothing. Exits non-zero when rows were refused or the "
        "file is unusable."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="The CSV file (UTF-8, header on the first line).")
        parser.add_argument("--program", required=True, help="Slug of the program to import into.")
        parser.add_argument("--kind", default="transactions", help="Importer to use (default: transactions).")
        parser.add_argument("--report", type=Path, help="Write the refused rows to this CSV file.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, **options):
        program = program_option(options["program"], active_only="it takes no imports")
        path: Path = options["file"]
        try:
            content = path.read_bytes()
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}.") from None
        try:
            batch = import_create(
                program=program,
                kind=options["kind"],
                filename=path.name,
                content=content,
                actor_label=f"command:import_transactions:{path.name}",
            )
        except ImportFileError as error:
            raise CommandError(error.message) from None
        show = not options["no_progress"] and options["verbosity"] >= 1
        bar = tqdm(total=import_progress(batch=batch)["total"], unit="row", disable=not show, file=sys.stderr)
        done = 0

        def progress(processed: int) -> None:
            nonlocal done
            bar.update(processed - done)
            done = processed

        batch = import_run(batch_id=batch.pk, progress=progress)
        bar.close()
        if batch.status == ImportBatch.Status.FAILED:
            raise CommandError(f"Import {batch.pk} failed: {batch.message}")
        self.stdout.write(
            f"Import {batch.pk} of {path.name} into {program.slug}: {batch.total_rows} rows, "
            f"{batch.landed} landed, {batch.skipped} already imported, {batch.failed} refused."
        )
        if batch.failed:
            rows = list(report_rows(batch=batch))
            if options["report"]:
                with options["report"].open("w", newline="") as handle:
                    writer = csv.writer(handle)
                    writer.writerow(["line", "key", "field", "reason"])
                    writer.writerows(rows)
                self.stdout.write(f"Refused rows written to {options['report']}.")
            for line, _key, field, message in rows[:20]:
                self.stderr.write(f"line {line}: {field or 'row'}: {message}")
            if len(rows) > 20:
                self.stderr.write(f"... and {len(rows) - 20} more (use --report FILE).")
            sys.exit(1)
