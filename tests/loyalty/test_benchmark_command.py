"""`manage.py benchmark ledger`: every operation measured next to its floor, the real data untouched."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from loyalty import ledger
from loyalty.management.commands.benchmark import Command
from loyalty.models import LedgerEntry, Member, PointAllocation, PointLot, PointsAccount, Program

LEDGER_MODELS = [Program, Member, PointsAccount, LedgerEntry, PointLot, PointAllocation]
OPERATIONS = ["credit", "debit", "expire", "reconcile"]


def _row_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in LEDGER_MODELS}


def _database_exists(name: str) -> bool:
    if connection.vendor == "sqlite":
        return Path(name).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cursor.fetchone() is not None


def _run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("benchmark", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def real_ledger(member_a):
    """Some real data, so "unchanged" means something."""
    return ledger.credit(
        account=member_a.account,
        points=120,
        reason="Purchase",
        actor=ledger.Actor.job("test"),
        idempotency_key="real-1",
        source="api",
    )


def test_it_measures_every_operation_against_its_floor_and_leaves_the_real_data_alone(real_ledger, tmp_path):
    path = tmp_path / "ledger.json"
    before = _row_counts()

    out, _ = _run(
        "ledger",
        "--scale",
        "small",
        "--credits",
        "20",
        "--debits",
        "20",
        "--lots",
        "200",
        "--json",
        str(path),
    )

    results = json.loads(path.read_text())
    operations = {row["operation"]: row for row in results["operations"]}
    assert list(operations) == OPERATIONS
    for row in operations.values():
        assert row["count"] > 0
        assert row["per_second"] > 0
        assert row["floor_per_second"] > 0
        assert row["ratio"] > 0
    assert (operations["credit"]["count"], operations["debit"]["count"]) == (20, 20)
    assert operations["expire"]["count"] == 200
    assert operations["reconcile"]["discrepancies"] == 0
    assert results["problems"] == []
    assert [t["operation"] for t in results["targets"]] == ["credit", "expire"]
    assert results["ledger_sql"]["credit"]
    for name in OPERATIONS:
        assert name in out
    # The real ledger is as it was, and the throwaway database is gone.
    assert _row_counts() == before
    assert PointsAccount.objects.get(pk=real_ledger.entry.account_id).balance == 120
    assert ledger.reconcile() == []
    bench_name = results["database"]["name"]
    assert bench_name != connection.settings_dict["NAME"]
    assert not _database_exists(bench_name)
    # The summary puts every operation of every result in the folder into one Markdown table.
    table, _ = _run("summary", "--json", str(tmp_path))
    for row in operations.values():
        assert (
            f"| ledger (small) | {row['operation']} | {row['count']:,} | {row['per_second']:,.1f} "
            f"| {row['floor_per_second']:,.1f} | {row['ratio']:,.2f} |"
        ) in table
    assert "Targets:\n- ledger: " in table
    assert f"{results['machine']['cpus']} CPUs" in table


def test_it_measures_only_the_operations_asked_for_on_the_jobs_workers(db, tmp_path):
    path = tmp_path / "ledger.json"

    out, _ = _run("ledger", "--scale", "small", "--lots", "300", "--only", "expire", "--json", str(path))

    results = json.loads(path.read_text())
    [expire] = results["operations"]
    assert (expire["operation"], expire["count"]) == ("expire", 300)
    # Ours and the floor on the same connections: the job's default on PostgreSQL.
    assert expire["workers"] == (ledger.EXPIRY_WORKERS if connection.vendor == "postgresql" else 1)
    assert expire["statements"]["ours"] == expire["statements"]["floor"]
    assert [t["operation"] for t in results["targets"]] == ["expire"]
    assert results["problems"] == []
    assert "credit" not in out


def test_only_applies_to_the_ledger_benchmark(db):
    with pytest.raises(CommandError, match="--only applies to the ledger benchmark"):
        _run("api", "--only", "expire")


def test_the_summary_refuses_an_empty_folder_and_a_file_that_is_not_a_result(db, tmp_path):
    with pytest.raises(CommandError, match=r"No benchmark results in .*make bench"):
        _run("summary", "--json", str(tmp_path))
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    with pytest.raises(CommandError, match=r"notes.json: not a benchmark result"):
        _run("summary", "--json", str(tmp_path))


def test_it_rejects_an_unknown_benchmark(db):
    with pytest.raises(CommandError, match="invalid choice: 'nonsense'"):
        _run("nonsense")


@pytest.mark.parametrize("option", ["--credits", "--debits", "--lots"])
def test_it_rejects_counts_below_one(db, option):
    with pytest.raises(CommandError, match=f"{option}: must be at least 1, got -5"):
        _run("ledger", option, "-5")
    with pytest.raises(CommandError, match=f"{option}: must be at least 1, got 0"):
        _run("ledger", f"{option}=0")


def test_it_rejects_a_count_that_is_not_a_number(db):
    with pytest.raises(CommandError, match="expected a whole number, got 'many'"):
        _run("ledger", "--lots", "many")


def test_its_help_explains_the_floors_and_options():
    text = Command().create_parser("manage.py", "benchmark").format_help()

    for word in [
        "floor",
        "ratio",
        "--scale",
        "--lots",
        "--credits",
        "--debits",
        "--json",
        "throwaway",
        "15 s",
    ]:
        assert word in text
