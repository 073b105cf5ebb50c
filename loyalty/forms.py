"""Forms of the agent's screens: they parse and validate; the ledger decides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django import forms
from django.utils import timezone

from loyalty.selectors import end_of_local_day

MAX_ADJUSTMENT = 1_000_000
MIN_REASON_LENGTH = 10
EARLIEST_DAY = date(2000, 1, 1)


class AdjustmentForm(forms.Form):
    """A manual correction. The hidden key is made when the form is shown, so a double submit posts once."""

    points = forms.IntegerField(
        min_value=-MAX_ADJUSTMENT,
        max_value=MAX_ADJUSTMENT,
        help_text="Positive adds points, negative removes them.",
    )
    reason = forms.CharField(
        min_length=MIN_REASON_LENGTH,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why: the member will be told, and it stays on the ledger for good.",
    )
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)

    def clean_points(self) -> int:
        points = self.cleaned_data["points"]
        if points == 0:
            raise forms.ValidationError("An adjustment must add or remove at least one point.")
        return points

    def clean_reason(self) -> str:
        reason = " ".join(self.cleaned_data["reason"].split())
        if len(reason) < MIN_REASON_LENGTH:
            raise forms.ValidationError(f"Give a reason of at least {MIN_REASON_LENGTH} characters.")
        return reason


@dataclass(frozen=True)
class Moment:
    """The instant a "balance on date" question is about, and how the agent asked for it."""

    at: datetime  # aware, in the program's time zone
    day: date
    whole_day: bool  # True when only a date was given: the end of that day is used


class BalanceOnDateForm(forms.Form):
    at = forms.CharField(
        label="Date",
        max_length=25,
        help_text="A day (2025-03-31) gives the balance at the end of that day; add a time for an exact "
        "moment (2025-03-31T18:00).",
        widget=forms.TextInput(attrs={"placeholder": "YYYY-MM-DD or YYYY-MM-DDTHH:MM"}),
    )

    def __init__(self, *args, tz, **kwargs):
        self.tz = tz
        super().__init__(*args, **kwargs)

    def clean_at(self) -> Moment:
        raw = self.cleaned_data["at"].strip()
        try:
            if len(raw) == 10:
                day = date.fromisoformat(raw)
                moment = Moment(at=end_of_local_day(day, self.tz), day=day, whole_day=True)
            else:
                parsed = datetime.fromisoformat(raw.replace(" ", "T", 1))
                if timezone.is_aware(parsed):
                    parsed = parsed.astimezone(self.tz)
                else:
                    parsed = parsed.replace(tzinfo=self.tz)
                moment = Moment(at=parsed, day=parsed.date(), whole_day=False)
        except (ValueError, OverflowError):
            raise forms.ValidationError(
                "Enter a date as YYYY-MM-DD, or a date and time as YYYY-MM-DDTHH:MM."
            ) from None
        today = timezone.localdate(timezone=self.tz)
        if moment.day < EARLIEST_DAY:
            raise forms.ValidationError(f"Pick a date from {EARLIEST_DAY:%Y-%m-%d} on.")
        if moment.day > today:
            raise forms.ValidationError("That is in the future: the member page shows today's balance.")
        return moment
