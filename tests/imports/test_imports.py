"""The CSV import: good rows land, bad rows are reported by line, a re-import changes nothing."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from loyalty.imports.engine import import_create, import_run
from loyalty.imports.models import ImportBatch, ImportedKey
from loyalty.models import LedgerEntry
from tests.loyalty.factories import EarningRuleFactory

pytestmark = pytest.mark.django_db

HEADER = "membership_number,type,reference,occurred_at,amount,original_reference\n"


@pytest.fixture
def rules(program_a):
    EarningRuleFactory(program=program_a)
    EarningRuleFactory.fixed_activity(program=program_a, code="survey", points=25)


def csv_for(member_a, member_b, member_of_b) -> bytes:
    a, b, other = member_a.membership_number, member_b.membership_number, member_of_b.membership_number
    rows = [
        f"{a},purchase,P-1,2026-01-10 10:00,20.00,",  # line 2: good
        f"{b},survey,S-1,2026-01-10T11:00:00+01:00,,",  # line 3: good
        f"{a},purchase,P-2,not a date,5,",  # line 4: bad date
        f"{a},purchase,P-3,2026-01-10 12:00,,",  # line 5: purchase without amount
        f"{other},purchase,P-4,2026-01-10 12:00,5,",  # line 6: member of another program
        f"{a},dance,D-1,2026-01-10 12:00,,",  # line 7: no such activity
        f"{a},return,RT-1,2026-01-11 09:00,10.00,P-1",  # line 8: good (half of P-1)
        f"{a},return,RT-2,2026-01-11 09:00,10.00,NOPE",  # line 9: no such purchase
    ]
    return (HEADER + "\n".join(rows) + "\n").encode()


def run(program, content, name="day.csv"):
    batch = import_create(program=program, kind="transactions", filename=name, content=content)
    return import_run(batch_id=batch.pk)


def test_bad_rows_are_reported_by_line_and_good_rows_land(program_a, member_a, member_b, member_of_b, rules):
    batch = run(program_a, csv_for(member_a, member_b, member_of_b))
    assert batch.status == ImportBatch.Status.DONE
    assert (batch.total_rows, batch.landed, batch.failed, batch.skipped) == (8, 3, 5, 0)
    report = {(e.line, e.field) for e in batch.errors.all()}
    assert report == {
        (4, "occurred_at"),
        (5, "amount"),
        (6, "membership_number"),
        (7, "type"),
        (9, "original_reference"),
    }
    member_a.account.refresh_from_db()
    member_b.account.refresh_from_db()
    assert member_a.account.balance == 10  # 20 earned, half returned
    assert member_b.account.balance == 25
    assert set(LedgerEntry.objects.values_list("source", flat=True)) == {"import"}
    assert LedgerEntry.objects.get(reference="P-1", kind="earn").actor_label == "import:day.csv"


def test_reimporting_the_same_file_changes_nothing(program_a, member_a, member_b, member_of_b, rules):
    content = csv_for(member_a, member_b, member_of_b)
    run(program_a, content)
    entries, keys = LedgerEntry.objects.count(), ImportedKey.objects.count()
    again = run(program_a, content, name="day-again.csv")
    assert (again.landed, again.skipped, again.failed) == (0, 3, 5)
    assert LedgerEntry.objects.count() == entries
    assert ImportedKey.objects.count() == keys


def test_a_changed_row_under_a_known_key_is_refused(program_a, member_a, rules):
    run(program_a, (HEADER + f"{member_a.membership_number},purchase,P-1,2026-01-10 10:00,20,\n").encode())
    again = run(
        program_a, (HEADER + f"{member_a.membership_number},purchase,P-1,2026-01-10 10:00,99,\n").encode()
    )
    assert (again.landed, again.failed) == (0, 1)
    assert "other values" in again.errors.get().message
    assert LedgerEntry.objects.count() == 1


def test_the_smallest_amount_lands_and_zero_is_refused(program_a, member_a, rules):
    """0.01 is the API's minimum too: a file must not refuse what the API accepts."""
    number = member_a.membership_number
    batch = run(
        program_a,
        (
            HEADER
            + f"{number},purchase,P-1,2026-01-10 10:00,0.01,\n{number},purchase,P-2,2026-01-10 10:00,0.00,\n"
        ).encode(),
    )
    assert (batch.landed, batch.failed) == (1, 1)
    assert [(e.line, e.field) for e in batch.errors.all()] == [(3, "amount")]
    assert ImportedKey.objects.filter(key="purchase:P-1").exists()  # landed (a cent earns no point)


def test_a_file_without_the_columns_fails_with_a_message(program_a):
    batch = run(program_a, b"who,what\n1,2\n")
    assert batch.status == ImportBatch.Status.FAILED
    assert "Missing columns" in batch.message


def test_bookkeeping_is_batched_not_per_row(program_a, member_a, django_assert_max_num_queries):
    """Rows that fail validation cost no query each: the chunk's bookkeeping is a fixed few statements."""
    small = HEADER + "".join(f"{member_a.membership_number},purchase,X-{n},bad,1,\n" for n in range(5))
    large = HEADER + "".join(f"{member_a.membership_number},purchase,X-{n},bad,1,\n" for n in range(400))
    for text in (small, large):
        batch = import_create(program=program_a, kind="transactions", filename="x.csv", content=text.encode())
        with django_assert_max_num_queries(12):
            import_run(batch_id=batch.pk)


def test_the_command_imports_and_exits_non_zero_on_refused_rows(program_a, member_a, rules, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        HEADER + f"{member_a.membership_number},purchase,C-1,2026-01-10 10:00,7,\nx,purchase,,,,\n"
    )
    report = tmp_path / "report.csv"
    with pytest.raises(SystemExit) as exit_:
        call_command(
            "import_transactions",
            str(path),
            "--program",
            program_a.slug,
            "--no-progress",
            "--report",
            str(report),
        )
    assert exit_.value.code == 1
    assert "3," in report.read_text()
    assert LedgerEntry.objects.filter(reference="C-1").exists()


def test_the_command_refuses_an_unknown_program(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(HEADER)
    with pytest.raises(CommandError, match=r"No program with slug .nope."):
        call_command("import_transactions", str(path), "--program", "nope")


def test_upload_page_runs_the_import_and_shows_the_report(
    login, agent_a, program_a, member_a, rules, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = login(agent_a)
    upload = SimpleUploadedFile(
        "up.csv",
        (
            HEADER + f"{member_a.membership_number},purchase,U-1,2026-01-10 10:00,5,\n,purchase,U-2,x,,\n"
        ).encode(),
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/imports/new/", {"program": program_a.pk, "kind": "transactions", "file": upload}
        )
    assert response.status_code == 302
    batch = ImportBatch.objects.get()
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"Refused rows" in page.content
    report = client.get(f"/imports/{batch.pk}/report.csv").content.decode()
    assert report.splitlines()[0] == "line,key,field,reason"
    assert report.splitlines()[1].startswith("3,")
    assert client.get("/imports/?_export=csv").status_code == 200


def test_upload_refuses_another_programs_import(login, agent_b, program_a):
    client = login(agent_b)
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        "/imports/new/",
        {
            "program": program_a.pk,
            "kind": "transactions",
            "file": SimpleUploadedFile("a.csv", HEADER.encode()),
        },
    )
    assert response.status_code == 400
    assert not ImportBatch.objects.exists()
