"""`manage.py benchmark reports`: every report page and the audit browser measured on generated
data in a throwaway database, next to the same SQL replayed raw; the real data untouched."""

import json
from io import StringIO

from django.core.management import call_command

from agents.supervisor.reports import REPORTS
from loyalty.models import LedgerEntry, Member


def test_it_measures_every_report_page_and_the_audit_browser(member_a, tmp_path):
    before = (Member.objects.count(), LedgerEntry.objects.count())
    path = tmp_path / "reports.json"
    out = StringIO()
    call_command(
        "benchmark",
        "reports",
        "--credits",
        "300",
        "--debits",
        "30",
        "--json",
        str(path),
        stdout=out,
        stderr=StringIO(),
    )
    results = json.loads(path.read_text())
    operations = {row["operation"]: row for row in results["operations"]}
    assert [f"report {slug}" for slug in REPORTS] == [
        name for name in operations if name.startswith("report ")
    ]
    assert {"audit page 1", "audit page 20", "audit ledger only", "audit one member"} <= set(operations)
    for row in operations.values():
        assert row["status"] == 200, row
        assert row["queries"] > 0 and row["per_second"] > 0
    assert results["problems"] == []
    assert [t["target"] for t in results["targets"]] == [f"report {slug} under 1 s" for slug in REPORTS]
    assert results["ledger_sql"]["report points"]  # the statements each page sent
    assert "report liability" in out.getvalue()
    assert (Member.objects.count(), LedgerEntry.objects.count()) == before
