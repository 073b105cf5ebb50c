"""`python manage.py benchmark ledger`: the ledger's throughput, each figure next to its raw-driver floor."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test.utils import override_settings
from django.utils import timezone

from loyalty.benchmarks import api as api_benchmark
from loyalty.benchmarks import imports as imports_benchmark
from loyalty.benchmarks import ledger as ledger_benchmark
from loyalty.benchmarks import reports as reports_benchmark
from loyalty.benchmarks import summary
from loyalty.benchmarks.base import format_table, load_average, machine_info, throwaway_database
from loyalty.management.jobs import positive_int

# api and imports read --credits as the number of requests / rows.
BENCHMARKS = {
    "ledger": ledger_benchmark,
    "api": api_benchmark,
    "imports": imports_benchmark,
    "reports": reports_benchmark,
}

HELP = """\
Measure the points ledger on the configured database (SQLite by default,
PostgreSQL with DATABASE_URL) and compare every figure with a floor measured in
the same run: the same SQL statements issued through the raw database driver
(the DB-API cursor of the same connection), without the Python around them.
ratio = ours / floor per second; 1.0 means our code adds nothing to what its
statements cost, 0.5 means it spends as long again in Python.

Operations:
  credit     ledger.credit on many accounts. Floor: BEGIN; SELECT the account
             FOR NO KEY UPDATE; INSERT the entry RETURNING id; INSERT the lot;
             UPDATE the account; COMMIT.
  debit      ledger.debit on accounts holding 100 lots each, every debit taking
             from two lots. Floor: as credit, plus the running-sum query for the
             lots needed, the UPDATE of those lots and the INSERT of allocations.
  expire     ledger.expire_due_lots over N due lots (about 10 per account), on
             the job's default number of connections (ledger.EXPIRY_WORKERS on
             PostgreSQL). Floor: the job's set-based batches as raw statements,
             on as many. The JSON has the seconds spent in each kind of statement.
  reconcile  ledger.reconcile over every entry the run made. Floor: the same
             statements replayed raw. The run fails if reconcile is not clean.

Credits and debits alternate with their floors in rounds, so a machine that gets
busier half-way does not skew the ratio; the JSON records the load average.
DEBUG is off while measuring, as in production.

It never touches your data: it creates a throwaway database the way Django's
test runner does (bench_<NAME> on PostgreSQL, migrated; on SQLite a file in a
temporary folder, its schema made from the models), bulk-loads it with
set-based SQL, and drops it at the end, even on error or Ctrl-C.

Targets (set for PostgreSQL): credit ratio at least 0.5; expiring 1,000,000
lots in under 15 s (projected linearly when --lots is another number).

Prints progress on stderr (-v 0 for none), then a table, and writes JSON
(figures, statement counts, the SQL one credit and one debit send, targets) to
--json, bench-results/<benchmark>.json by default.
"""


def _scale_help() -> str:
    parts = []
    for scale, by_vendor in ledger_benchmark.SCALES.items():
        counts = [
            f"{c.credits:,} credits, {c.debits:,} debits, {c.lots:,} lots on {vendor}"
            for vendor, c in by_vendor.items()
        ]
        parts.append(f"{scale}: {'; '.join(counts)}")
    return (
        "small: quick numbers for CI and tests; full (the default): the issue's sizes. "
        + ". ".join(parts)
        + "."
    )


class Command(BaseCommand):
    help = HELP

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser):
        parser.add_argument(
            "benchmark",
            choices=[*sorted(BENCHMARKS), "summary"],
            help="Which benchmark to run; summary prints the latest results of all as one Markdown table.",
        )
        parser.add_argument(
            "--scale",
            choices=["small", "full"],
            default="full",
            help=_scale_help(),
        )
        parser.add_argument("--credits", type=positive_int, help="Number of credits (overrides the scale).")
        parser.add_argument("--debits", type=positive_int, help="Number of debits (overrides the scale).")
        parser.add_argument(
            "--lots", type=positive_int, help="Number of lots to expire (overrides the scale)."
        )
        parser.add_argument(
            "--only",
            action="append",
            choices=ledger_benchmark.OPERATIONS,
            metavar="OPERATION",
            help="ledger only: measure just this operation (repeatable; one of "
            f"{', '.join(ledger_benchmark.OPERATIONS)}). The run still fails if reconcile is not clean.",
        )
        parser.add_argument(
            "--json",
            type=Path,
            default=None,
            metavar="PATH",
            help="Where to write the results (default: bench-results/<benchmark>.json in the project); "
            "for summary, the folder to read.",
        )

    def handle(self, *args, **options):
        name = options["benchmark"]
        if name == "summary":
            return self._summary(options["json"] or Path(settings.BASE_DIR) / "bench-results")
        module = BENCHMARKS[name]
        defaults = module.default_counts(options["scale"], connection.vendor)
        counts = module.Counts(
            credits=options["credits"] or defaults.credits,
            debits=options["debits"] or defaults.debits,
            lots=options["lots"] or defaults.lots,
        )
        only = options.get("only")
        if only and name != "ledger":
            raise CommandError("--only applies to the ledger benchmark.")
        path = options["json"] or Path(settings.BASE_DIR) / "bench-results" / f"{name}.json"
        verbose = options["verbosity"] >= 1
        started = timezone.now()
        load_before = load_average()

        def log(message: str) -> None:
            if verbose:
                self.stderr.write(message)

        # As in production: with DEBUG on, Django would log every statement our code
        # sends (the raw-driver floor never pays for that).
        with override_settings(DEBUG=False), throwaway_database() as bench:
            log(f"benchmarking the {name} on {bench.vendor} database {bench.settings_dict['NAME']}")
            database = {
                "vendor": bench.vendor,
                "version": ".".join(map(str, bench.get_database_version())),
                "name": bench.settings_dict["NAME"],
            }
            report = module.run(counts, log=log, **({"only": only} if only else {}))

        results = {
            "benchmark": name,
            "scale": options["scale"],
            "counts": vars(counts),
            "database": database,
            "machine": machine_info(load_before),
            "started_at": started.isoformat(),
            "setup_seconds": round(report.setup_seconds, 2),
            "operations": [m.as_dict() for m in report.measurements],
            "targets": report.targets,
            "problems": report.problems,
            "ledger_sql": report.sql,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")

        self.stdout.write(
            f"{name} benchmark on {database['vendor']} {database['version']}, scale {options['scale']}"
        )
        self.stdout.write(format_table(report.measurements))
        for target in report.targets:
            verdict = "met" if target["met"] else "MISSED"
            scope = "" if target["applies"] else " (set for PostgreSQL; shown for information)"
            projected = " (projected)" if target.get("projected") else ""
            self.stdout.write(f"target: {target['target']}: {target['value']}{projected}, {verdict}{scope}")
        self.stdout.write(f"results written to {path}")
        if report.problems:
            raise CommandError("The benchmark found problems: " + " ".join(report.problems))

    def _summary(self, folder: Path) -> None:
        try:
            results = summary.load_results(folder)
        except ValueError as error:
            raise CommandError(str(error)) from None
        if not results:
            raise CommandError(f"No benchmark results in {folder}: run `make bench` first.")
        self.stdout.write(summary.markdown(results))
