"""The short ways through a row form's fields give what Django's gives.

`RowForm._clean_fields` cleans field by field without bound fields; `TransactionRowForm` first
tries `_plain_values`, which cleans cells of the usual shapes without the fields at all.

Every row below goes through `TransactionRowForm` (one form rebound row after row, as the
engine does) and through a twin that cleans its fields Django's way; validity, the errors
(field, message, code) and the cleaned values must be the same.
"""

from __future__ import annotations

import itertools
import random

from django import forms
from django.utils import timezone

from loyalty.imports.transactions import TransactionRowForm, _plain_values
from loyalty.models import Program


class DjangoWay(TransactionRowForm):
    _clean_fields = forms.Form._clean_fields


GOOD = {
    "membership_number": "1000017",
    "type": "purchase",
    "reference": "R-1",
    "occurred_at": "2026-03-01T10:00:00+01:00",
    "amount": "10.50",
    "original_reference": "",
}
VARIANTS = {
    "membership_number": [
        "",
        " 1000017 ",
        "10 17",
        "~!x",
        "1000017\t",
        "x" * 20,
        "x" * 21,
        "10\x0017",
        "\u0661\u0662\u0663",
        None,
    ],
    "type": ["", "return", "survey", "pur chase", "achat-été", "x" * 41, "a_b-c", None],
    "reference": [
        "",
        "R 1",
        " R-1",
        "\u00a0R-2\u2003",
        "r" * 120,
        "r" * 121,
        "R\x00",
        "R,with;odd'\"chars",
        None,
    ],
    "occurred_at": [
        "",
        "2026-03-01 10:00",
        "2026-03-01",
        "2026-03-01T10:00:00Z",
        "2026-03-29T02:30:00",  # does not exist in Paris
        "2026-10-25T02:30:00",  # happens twice in Paris
        "2026-13-01T10:00:00",
        "01/03/2026 10:00",
        "2026-03-01T10:00:00.123456-05:00",
        "2026-03-01T10:00:00.5+01:00",
        "2026-03-01T10:00:00-00:00",
        "2026-02-30T10:00:00+01:00",
        "2026-03-01T24:00:00+01:00",
        "2026-03-01T10:00:00+25:00",
        "2026-03-01t10:00:00+01:00",
        "yesterday",
        None,
    ],
    "amount": [
        "",
        "10",
        "10.5",
        "0.01",
        "0.02",
        "0.00",
        "0000000001.50",
        "9999999999.99",
        "10.",
        ".5",
        "01",
        "0.001",
        "-5",
        "1e3",
        "1_000",
        "NaN",
        "Infinity",
        "1234567890.12",
        "12345678901.1",
        " 7.25 ",
        "\u0663.\u0665",
        "ten",
        None,
    ],
    "original_reference": ["R-0", "o" * 121, "\x00", None],
}


def _rows():
    yield GOOD
    for name, values in VARIANTS.items():
        for value in values:
            yield {**GOOD, name: value}
    for a, b in itertools.combinations(VARIANTS, 2):  # two fields off at once
        for x, y in zip(VARIANTS[a], VARIANTS[b], strict=False):
            yield {**GOOD, a: x, b: y}
    draw = random.Random(6)
    for _ in range(300):
        yield {name: draw.choice([GOOD[name], *values]) for name, values in VARIANTS.items()}


def _outcome(form) -> tuple:
    valid = form.is_valid()
    errors = {
        name: [(e.message % (e.params or {}), e.code) for e in errs]
        for name, errs in form.errors.as_data().items()
    }
    return valid, errors, form.cleaned_data


def test_the_short_way_through_the_fields_gives_what_djangos_gives():
    program = Program(name="P", slug="p", time_zone="Europe/Paris")
    rebound = None
    rows = list(_rows())
    with timezone.override(program.tz):
        for row in rows:
            data = {k: v for k, v in row.items() if v is not None}  # None: the column is missing
            rebound = rebound.rebind(data) if rebound else TransactionRowForm(data=data, program=program)
            theirs = _outcome(DjangoWay(data=data, program=program))
            assert _outcome(rebound) == theirs, row
            assert _outcome(TransactionRowForm(data=data, program=program)) == theirs, row
    # Many rows are valid, and many of those take the shortest way.
    assert sum(_outcome(DjangoWay(data=row, program=program))[0] for row in rows) > 20
    assert (
        sum(_plain_values({k: v for k, v in row.items() if v is not None}) is not None for row in rows) > 20
    )
