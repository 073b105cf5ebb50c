"""The generic CSV import: parse, validate each row with a form, land the good rows, report the bad.

Any app can import its own row type by subclassing `Importer` and registering it:

    @register
    class KpiImporter(Importer):
        kind = "agent_kpis"                 # stored on the batch; picks the importer
        label = "Agent KPI records"
        form_class = KpiRowForm             # a RowForm: Form(data=row, program=program)
        required_columns = ("agent", "period", "csat")

        def key(self, data) -> str:         # what makes a row the same row on a re-import
            return f"{data['agent']}:{data['period']}"

        def land(self, rows) -> list[RowError]:
            ...                             # write the chunk (bulk_create); return refused rows

The engine reads the file in chunks of `chunk_size` rows. For each chunk it
validates every row with the form (naive times are read in the program's time
zone), skips rows whose key landed before with the same values (a changed row
under a known key is refused), calls `land` once, and writes the keys of the
landed rows and the errors with one bulk insert each, all in one transaction:
a chunk's rows and its bookkeeping commit together, so a crash leaves nothing
half-recorded and a re-run picks up where it stopped. Bookkeeping costs a
constant number of queries per chunk, never one per row.

The next chunk is read and validated in a thread while the current one is
landed (most of landing is waiting for the database), so a row form and `key`
must not use the database: a query there is refused. Checks that need the
database belong in `land`, made once for the chunk.

Line numbers are the file's: the header is line 1, the first row line 2 (a
quoted field spanning lines counts them all).
"""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import json
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, ClassVar

from django import forms
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone, translation

from loyalty.audit import acting_as
from loyalty.bulk import bulk_insert_rows
from loyalty.errors import ApplicationError
from loyalty.imports.models import ImportBatch, ImportedKey, ImportRowError
from loyalty.ledger import Actor
from loyalty.models import Program

MAX_FILE_BYTES = 50 * 1024 * 1024
PROGRESS_TTL = 24 * 3600


class ImportFileError(ApplicationError):
    """The whole file is unusable: not UTF-8, not CSV, missing columns, too big."""

    code = "import_file_invalid"
    status = 400


@dataclass(frozen=True)
class Row:
    line: int
    raw: dict[str, str]
    data: dict[str, Any]  # the form's cleaned_data
    key: str
    fingerprint: str


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str
    key: str = ""


class RowForm(forms.Form):
    """A per-row schema: a form that also knows the program the file is imported into."""

    #: True when one instance may check row after row (`rebind`): nothing the form sets up in
    #: __init__ or keeps between clean() calls depends on a row. Saves a deep copy of the
    #: fields per row, a third of the validation's cost.
    rebindable: ClassVar[bool] = False

    def __init__(self, *args, program: Program, **kwargs):
        self.program = program
        super().__init__(*args, **kwargs)

    def _clean_fields(self):
        """Django's, without a BoundField per field while every field is valid: each field's own
        clean() on the value its widget reads, then its clean_<name>() (the bound-field machinery
        was half the validation's time). The first error hands the row to Django's, which reports
        every error; so does a field that cleans otherwise (a disabled field, a file)."""
        if all(
            not field.disabled and type(field)._clean_bound_field is forms.Field._clean_bound_field
            for field in self.fields.values()
        ):
            try:
                for name, field in self.fields.items():
                    self.cleaned_data[name] = field.clean(
                        self._widget_data_value(field.widget, self.add_prefix(name))
                    )
                    if hasattr(self, f"clean_{name}"):
                        self.cleaned_data[name] = getattr(self, f"clean_{name}")()
                return
            except forms.ValidationError:
                self.cleaned_data = {}
        super()._clean_fields()

    def rebind(self, data: dict[str, str]) -> RowForm:
        """This form, bound to another row's data as a new form would be (a rebindable form only)."""
        self.data = data
        self._errors = None
        self._bound_fields_cache = {}
        for computed in ("cleaned_data", "changed_data"):
            self.__dict__.pop(computed, None)
        return self


class Importer:
    kind: ClassVar[str]
    label: ClassVar[str]
    form_class: ClassVar[type[RowForm]]
    required_columns: ClassVar[tuple[str, ...]]
    optional_columns: ClassVar[tuple[str, ...]] = ()
    chunk_size: ClassVar[int] = 500
    description: ClassVar[str] = ""

    def __init__(self, *, batch: ImportBatch, actor: Actor):
        self.batch = batch
        self.program = batch.program
        self.actor = actor

    def key(self, data: dict[str, Any]) -> str:
        raise NotImplementedError

    def land(self, rows: list[Row]) -> list[RowError]:
        """Write the chunk's good rows; return the ones refused (the others count as landed)."""
        raise NotImplementedError


REGISTRY: dict[str, type[Importer]] = {}


def register(importer: type[Importer]) -> type[Importer]:
    REGISTRY[importer.kind] = importer
    return importer


def importer_for(kind: str) -> type[Importer]:
    try:
        return REGISTRY[kind]
    except KeyError:
        raise ImportFileError(f"There is no importer for {kind!r}.", field="kind") from None


def _fingerprint(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _progress_key(batch_id: int) -> str:
    return f"imports:progress:{batch_id}"


# --- Services -------------------------------------------------------------------


def import_create(
    *, program: Program, kind: str, filename: str, content: bytes, user=None, actor_label: str = ""
) -> ImportBatch:
    """Record a file to import (it runs with `import_run`); refuses an unknown kind or an oversized file."""
    importer_for(kind)
    if len(content) > MAX_FILE_BYTES:
        raise ImportFileError(f"The file is over {MAX_FILE_BYTES // (1024 * 1024)} MB.", field="file")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError("The file is not UTF-8 text.", field="file") from None
    if "\x00" in text:
        raise ImportFileError("The file is not a CSV text file.", field="file")
    label = actor_label or (f"user:{user.get_username()}" if user else f"import:{filename}")
    return ImportBatch.objects.create(
        program=program,
        kind=kind,
        filename=filename[:255],
        sha256=hashlib.sha256(content).hexdigest(),
        content=text,
        created_by=user,
        actor_label=label[:120],
    )


def import_progress(*, batch: ImportBatch) -> dict[str, int]:
    """Rows processed so far (from the cache while running; from the batch once finished)."""
    if batch.is_finished:
        return {"processed": batch.total_rows, "total": batch.total_rows}
    return cache.get(_progress_key(batch.pk)) or {"processed": 0, "total": _estimate_rows(batch.content)}


def _estimate_rows(text: str) -> int:
    return max(text.count("\n") - (0 if text.endswith("\n") else -1) - 1, 0)


def import_run(*, batch_id: int, progress: Callable[[int], None] | None = None) -> ImportBatch:
    """Import a recorded file. Idempotent: a finished batch is returned as it is; keys landed before skip."""
    batch = ImportBatch.objects.select_related("program", "created_by").get(pk=batch_id)
    if batch.is_finished:
        return batch
    batch.status = ImportBatch.Status.RUNNING
    batch.started_at = timezone.now()
    batch.save(update_fields=["status", "started_at"])
    actor = Actor(label=f"import:{batch.filename}"[:120], user=batch.created_by)
    importer = importer_for(batch.kind)(batch=batch, actor=actor)
    counts = {"total_rows": 0, "landed": 0, "skipped": 0, "failed": 0}
    total = _estimate_rows(batch.content)
    try:
        with (
            acting_as(f"import:{batch.filename}"[:100]),
            timezone.override(batch.program.tz),
            _read_ahead(lambda: _chunks(importer, batch.content)) as chunks,
        ):
            while True:
                with _collector_paused():  # while the chunk is written (and the next one read)
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    rows, errors, skipped, size = chunk
                    counts["total_rows"] += size
                    _land_chunk(importer, batch, rows, errors, skipped, counts)
                cache.set(
                    _progress_key(batch.pk),
                    {"processed": counts["total_rows"], "total": max(total, counts["total_rows"])},
                    PROGRESS_TTL,
                )
                if progress:
                    progress(counts["total_rows"])
    except ImportFileError as error:
        batch.status = ImportBatch.Status.FAILED
        batch.message = error.message[:500]
    else:
        batch.status = ImportBatch.Status.DONE
    for name, value in counts.items():
        setattr(batch, name, value)
    batch.finished_at = timezone.now()
    batch.save(update_fields=[*counts, "status", "message", "finished_at"])
    cache.delete(_progress_key(batch.pk))
    return batch


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No automatic cyclic garbage collection inside. A chunk makes tens of thousands of objects
    that live until it is written, and the collector would walk them (and all the process holds)
    again and again: a fifth of an import's time. What the chunk leaves is collected after it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_END = object()


@contextmanager
def _read_ahead(produce: Callable[[], Iterator[Any]]) -> Iterator[Iterator[Any]]:
    """The items of `produce()`, each made in a thread while the caller works on the one before:
    the next chunk is read and validated while this one lands, mostly while the caller waits on
    the database (the thread holds one item ready and makes the next, no more). The thread keeps the
    caller's time zone (naive times in the file) and language (error messages); it may not query
    the database, being outside the caller's transaction. Its exception is raised to the caller
    where its item would have come; leaving stops the thread."""
    handoff: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    zone, language = timezone.get_current_timezone(), translation.get_language()

    def work() -> None:
        try:
            with (
                timezone.override(zone),
                translation.override(language),
                connection.execute_wrapper(_no_queries),
            ):
                for item in produce():
                    handoff.put((item, None))
                    if stop.is_set():
                        return
            handoff.put((_END, None))
        except BaseException as error:
            handoff.put((_END, error))
        finally:
            connection.close()  # this thread's own connection, if a refused query opened one

    def items() -> Iterator[Any]:
        while True:
            item, error = handoff.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item

    thread = threading.Thread(target=work, name="import-read-ahead", daemon=True)
    thread.start()
    try:
        yield items()
    finally:
        stop.set()
        while thread.is_alive():  # take what it is handing over, so it sees the stop
            with suppress(queue.Empty):
                handoff.get(timeout=0.05)
        thread.join()


def _no_queries(execute, sql, params, many, context):
    raise RuntimeError(
        "An import's row form and key() may not query the database (they run in a thread, outside "
        "the import's transaction); check against the database in land(), once per chunk."
    )


def _reader(importer: Importer, text: str) -> csv.DictReader:
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [name.strip() for name in (reader.fieldnames or [])]
    missing = [c for c in importer.required_columns if c not in header]
    if missing:
        expected = ", ".join(importer.required_columns)
        raise ImportFileError(
            f"Missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; the header must name "
            f"{expected}"
            + (f" (optional: {', '.join(importer.optional_columns)})." if importer.optional_columns else "."),
            field="file",
        )
    reader.fieldnames = header
    return reader


def _chunks(importer: Importer, text: str) -> Iterator[tuple[list[Row], list[RowError], int, int]]:
    """Validated chunks: the good rows (first time seen in the file), the bad ones, duplicates skipped."""
    reader = _reader(importer, text)
    seen: dict[str, tuple[str, int]] = {}
    rows: list[Row] = []
    errors: list[RowError] = []
    skipped = 0
    size = 0
    form = None
    try:
        for record in reader:
            start = reader.line_num  # the line the row ends on: its line unless a quoted cell spans lines
            size += 1
            if None in record:  # more cells than the header has names
                errors.append(RowError(start, "", "The row has more cells than the header."))
                record.pop(None)
            else:
                raw = {k: (v or "").strip() for k, v in record.items()}
                if form is not None and importer.form_class.rebindable:
                    form = form.rebind(raw)
                else:
                    form = importer.form_class(data=raw, program=importer.program)
                if not form.is_valid():
                    errors += [
                        RowError(start, "" if name == "__all__" else name, message)
                        for name, messages in form.errors.items()
                        for message in messages
                    ]
                else:
                    data = form.cleaned_data
                    key = importer.key(data)
                    fingerprint = _fingerprint(data)
                    earlier = seen.get(key)
                    if earlier is None:
                        seen[key] = (fingerprint, start)
                        rows.append(Row(start, raw, data, key, fingerprint))
                    elif earlier[0] == fingerprint:
                        skipped += 1
                    else:
                        errors.append(
                            RowError(start, "", f"Same key as line {earlier[1]} with other values.", key)
                        )
            if size >= importer.chunk_size:
                yield rows, errors, skipped, size
                rows, errors, skipped, size = [], [], 0, 0
    except csv.Error as error:
        # The csv reader's own count: the DictReader's stops at the last row it returned.
        line = reader.reader.line_num
        raise ImportFileError(f"Line {line}: the file is not valid CSV ({error}).") from None
    if size:
        yield rows, errors, skipped, size


def _land_chunk(importer, batch, rows: list[Row], errors: list[RowError], skipped: int, counts) -> None:
    counts["skipped"] += skipped
    with transaction.atomic():
        if rows:
            known = dict(
                ImportedKey.objects.filter(
                    program_id=batch.program_id, kind=batch.kind, key__any=[row.key for row in rows]
                ).values_list("key", "fingerprint")
            )
            fresh = []
            for row in rows:
                if row.key not in known:
                    fresh.append(row)
                elif known[row.key] == row.fingerprint:
                    counts["skipped"] += 1
                else:
                    errors.append(
                        RowError(row.line, "", "Imported before with other values; not changed.", row.key)
                    )
            refused = importer.land(fresh) if fresh else []
            refused_lines = {error.line for error in refused}
            errors += refused
            landed = [row for row in fresh if row.line not in refused_lines]
            bulk_insert_rows(
                ImportedKey,
                [
                    {
                        "program_id": batch.program_id,
                        "kind": batch.kind,
                        "key": row.key,
                        "fingerprint": row.fingerprint,
                        "batch_id": batch.pk,
                        "line": row.line,
                    }
                    for row in landed
                ],
            )
            counts["landed"] += len(landed)
        if errors:
            ImportRowError.objects.bulk_create(
                ImportRowError(
                    batch=batch, line=e.line, key=e.key[:200], field=e.field[:60], message=e.message[:500]
                )
                for e in errors
            )
            counts["failed"] += len({e.line for e in errors})


def report_rows(*, batch: ImportBatch) -> Iterator[tuple[int, str, str, str]]:
    """The validation report: (line, key, field, reason) per refused row, in file order."""
    yield from batch.errors.order_by("line", "id").values_list("line", "key", "field", "message").iterator()
