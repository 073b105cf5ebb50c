"""Purchases, activities and returns from a CSV file, posted through `loyalty.earning`.

Columns: membership_number, type, reference, occurred_at, amount, original_reference.
`type` is "purchase", "return" or an activity code of the program's earning rules;
a purchase and a return need an amount, a return names the purchase it returns in
`original_reference`. Times without a zone are in the program's time zone.

Each row posts exactly as the API would (the same services, so the same rules,
caps, promotions and idempotency by reference): a row reported by both the API
and a file earns once. Purchases and activities go through
`loyalty.earning.activities_post`, which gives each row what `activity_post`
would and writes a chunk's plain earnings set-based. A refused row (unknown
member, no such purchase, member suspended...) writes nothing; the chunk's other rows land.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from django import forms

from loyalty.earning import Activity, activities_post, purchase_return
from loyalty.errors import ApplicationError
from loyalty.imports.engine import Importer, Row, RowError, RowForm, register
from loyalty.models import PURCHASE, LedgerEntry, Member, Program

RETURN = "return"


class TransactionRowForm(RowForm):
    rebindable = True

    membership_number = forms.CharField(max_length=20)
    type = forms.SlugField(max_length=40, help_text='"purchase", "return" or an activity code.')
    reference = forms.CharField(max_length=120)
    occurred_at = forms.DateTimeField()
    amount = forms.DecimalField(required=False, max_digits=12, decimal_places=2, min_value=Decimal("0.01"))
    original_reference = forms.CharField(required=False, max_length=120)

    def _clean_fields(self):
        # Most rows are plain: their values without the fields' machinery (see _plain_values).
        plain = _plain_values(self.data)
        if plain is None:
            super()._clean_fields()
        else:
            self.cleaned_data = plain

    def clean(self):
        data = super().clean()
        kind = data.get("type")
        if kind in (PURCHASE, RETURN) and data.get("amount") is None and "amount" not in self.errors:
            self.add_error("amount", f"A {kind} needs an amount.")
        if kind == RETURN and not data.get("original_reference"):
            self.add_error("original_reference", "A return names the purchase it returns.")
        return data


# The usual shapes of a cell, whose cleaning the fields above would accept as they are. Text:
# printable ASCII without a NUL or spaces at the ends. A time: ISO 8601 with its offset. An amount:
# at most ten digits and two decimals.
_TEXT = re.compile(r"[!-~](?:[ -~]*[!-~])?")
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")
_AWARE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_AMOUNT = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,2})?")


def _plain_values(data) -> dict | None:
    """What TransactionRowForm's fields clean a row into, when every cell has a usual shape
    whose cleaning is plain (the fields' machinery is most of an import's validation time);
    None for any other row, which the fields clean themselves (and report its errors).
    tests/imports/test_row_validation.py holds it to what the fields give."""
    number, kind, reference = data.get("membership_number"), data.get("type"), data.get("reference")
    at, amount, original = (
        data.get("occurred_at"),
        data.get("amount") or "",
        data.get("original_reference") or "",
    )
    if not (
        isinstance(number, str)
        and len(number) <= 20
        and _TEXT.fullmatch(number)
        and isinstance(kind, str)
        and len(kind) <= 40
        and _SLUG.fullmatch(kind)
        and isinstance(reference, str)
        and len(reference) <= 120
        and _TEXT.fullmatch(reference)
        and isinstance(at, str)
        and _AWARE_TIME.fullmatch(at)
        and isinstance(amount, str)
        and (not amount or _AMOUNT.fullmatch(amount))
        and isinstance(original, str)
        and len(original) <= 120
        and (not original or _TEXT.fullmatch(original))
    ):
        return None
    try:
        moment = datetime.fromisoformat(at)  # what the field's parse_datetime tries first
    except ValueError:
        return None
    value = Decimal(amount) if amount else None
    # Compared with the field's own minimum, as its validator does.
    if value is not None and not value >= TransactionRowForm.base_fields["amount"].min_value:
        return None
    return {
        "membership_number": number,
        "type": kind,
        "reference": reference,
        "occurred_at": moment,
        "amount": value,
        "original_reference": original,
    }


@register
class TransactionImporter(Importer):
    kind = "transactions"
    label = "Purchases, activities and returns"
    form_class = TransactionRowForm
    required_columns = ("membership_number", "type", "reference", "occurred_at")
    optional_columns = ("amount", "original_reference")
    # A chunk's fixed costs (locking and reading its members' accounts, saving their balances,
    # a few statements) are paid once per chunk, and a member with several rows in it once. The
    # price: a posting to one of the chunk's members (the API, say) waits for the chunk's commit,
    # about a second at 5,000 rows.
    chunk_size = 5000
    description = __doc__

    def key(self, data) -> str:
        # The ledger's own key space: a return by its reference, anything else by type and reference.
        return f"{data['type']}:{data['reference']}"

    def land(self, rows: list[Row]) -> list[RowError]:
        numbers = {row.data["membership_number"] for row in rows}
        # The program read once for the chunk, not joined to each of its members' rows.
        program = Program.objects.get(pk=self.program.pk)
        members = {}
        for member in Member.objects.filter(program=program, membership_number__any=numbers).select_related(
            "tier", "account"
        ):
            member.program = program
            members[member.membership_number] = member
        refused: list[RowError] = []
        run: list[tuple[Row, Activity]] = []  # consecutive activities, posted together
        for row in rows:
            data = row.data
            member = members.get(data["membership_number"])
            if member is None:
                refused.append(
                    RowError(row.line, "membership_number", "No such member in this program.", row.key)
                )
            elif data["type"] == RETURN:
                # A return may name a purchase of the run before it: that run is posted first.
                refused += self._post_activities(run)
                run = []
                try:
                    # The service posts inside its own atomic block (a savepoint here, in the
                    # chunk's transaction), so a refusal undoes this row only.
                    self._return(member, data)
                except ApplicationError as error:
                    refused.append(RowError(row.line, error.field or "", error.message, row.key))
            else:
                activity = Activity(
                    member=member,
                    code=data["type"],
                    reference=data["reference"],
                    amount=data["amount"],
                    occurred_at=data["occurred_at"],
                )
                run.append((row, activity))
        refused += self._post_activities(run)
        return sorted(refused, key=lambda error: error.line)

    def _post_activities(self, run: list[tuple[Row, Activity]]) -> list[RowError]:
        """Post the activities as `activity_post` would one by one (see `activities_post`)."""
        results = activities_post(
            activities=[activity for _, activity in run], source=LedgerEntry.Source.IMPORT, actor=self.actor
        )
        return [
            RowError(row.line, result.field or "", result.message, row.key)
            for (row, _), result in zip(run, results, strict=True)
            if isinstance(result, ApplicationError)
        ]

    def _return(self, member: Member, data) -> None:
        purchase_return(
            member=member,
            original_reference=data["original_reference"],
            amount=data["amount"],
            reference=data["reference"],
            source=LedgerEntry.Source.IMPORT,
            actor=self.actor,
        )
