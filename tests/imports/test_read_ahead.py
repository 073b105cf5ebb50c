"""The next chunk is read and validated in a thread while the current one lands: what that thread
must keep (the program's time zone, the caller's language, the order of a broken file's errors)
and what it may not do (query the database, outlive the import)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django import forms
from django.utils import translation

from loyalty.imports import engine
from loyalty.imports.engine import Importer, RowForm, import_create, import_run
from loyalty.imports.models import ImportBatch
from loyalty.imports.transactions import TransactionImporter
from loyalty.models import LedgerEntry, Program
from tests.loyalty.factories import EarningRuleFactory

pytestmark = pytest.mark.django_db

HEADER = "membership_number,type,reference,occurred_at,amount\n"


@pytest.fixture
def rules(program_a):
    EarningRuleFactory(program=program_a)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(TransactionImporter, "chunk_size", 2)


def run(program, text: str, kind="transactions"):
    batch = import_create(program=program, kind=kind, filename="f.csv", content=text.encode())
    return import_run(batch_id=batch.pk)


def _read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "import-read-ahead"]


def test_naive_times_are_read_in_the_programs_time_zone(program_a, member_a, rules, small_chunks):
    number = member_a.membership_number
    rows = [f"{number},purchase,P-{n},2026-07-0{n} 10:00,20\n" for n in range(1, 6)]
    batch = run(program_a, HEADER + "".join(rows))

    assert batch.landed == 5
    # Paris is UTC+2 in July: 10:00 there is 08:00 UTC, in every chunk.
    assert sorted(LedgerEntry.objects.values_list("occurred_at", flat=True)) == [
        datetime(2026, 7, n, 8, 0, tzinfo=UTC) for n in range(1, 6)
    ]


def test_row_errors_are_in_the_callers_language(program_a, member_a, rules, small_chunks):
    number = member_a.membership_number
    rows = [f"{number},purchase,P-{n},{'never' if n == 4 else '2026-07-01 10:00'},20\n" for n in range(5)]
    with translation.override("fr"):
        batch = run(program_a, HEADER + "".join(rows))
        expected = str(forms.DateTimeField.default_error_messages["invalid"])

    assert expected != "Enter a valid date/time."
    assert [(e.line, e.message) for e in batch.errors.all()] == [(6, expected)]


def test_a_file_broken_midway_lands_the_chunks_before_and_names_the_line(
    program_a, member_a, rules, small_chunks
):
    number = member_a.membership_number
    good = [f"{number},purchase,P-{n},2026-07-01 10:00,20\n" for n in range(4)]
    huge = f"{number},purchase,P-9,2026-07-01 10:00,{'9' * 200_000}\n"  # over csv's field size limit
    batch = run(program_a, HEADER + "".join(good) + huge + good[0].replace("P-0", "P-10"))

    assert batch.status == ImportBatch.Status.FAILED
    assert batch.message.startswith("Line 6: the file is not valid CSV")
    assert batch.landed == 4
    assert LedgerEntry.objects.count() == 4
    assert _read_ahead_threads() == []


def test_a_failure_while_landing_stops_the_reading_thread(
    program_a, member_a, rules, small_chunks, monkeypatch
):
    def broken_land(self, rows):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(TransactionImporter, "land", broken_land)
    number = member_a.membership_number
    rows = [f"{number},purchase,P-{n},2026-07-01 10:00,20\n" for n in range(20)]

    with pytest.raises(RuntimeError, match="went away"):
        run(program_a, HEADER + "".join(rows))
    assert _read_ahead_threads() == []
    assert LedgerEntry.objects.count() == 0


class _QueryingForm(RowForm):
    name = forms.CharField()

    def clean_name(self):
        Program.objects.filter(slug=self.cleaned_data["name"]).exists()  # what the engine refuses
        return self.cleaned_data["name"]


class _QueryingImporter(Importer):
    kind = "querying"
    label = "Checks each row against the database"
    form_class = _QueryingForm
    required_columns = ("name",)

    def key(self, data) -> str:
        return data["name"]

    def land(self, rows):
        return []


def test_a_row_form_that_queries_the_database_is_refused(program_a, monkeypatch):
    monkeypatch.setitem(engine.REGISTRY, "querying", _QueryingImporter)

    with pytest.raises(RuntimeError, match="may not query the database"):
        run(program_a, "name\nprogram-a\n", kind="querying")
    assert _read_ahead_threads() == []
