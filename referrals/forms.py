"""Forms of the referral screens: they parse and validate; the services decide."""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.utils import timezone

MIN_REASON_LENGTH = 5
MAX_REPORT_DAYS = 366


def _reason_field(help_text: str) -> forms.CharField:
    return forms.CharField(
        min_length=MIN_REASON_LENGTH,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=help_text,
    )


class AttributeForm(forms.Form):
    referral_code = forms.CharField(
        label="Referral code", max_length=32, help_text="The code the member says they were given."
    )
    reason = _reason_field("Why by hand: what the member told you, the ticket number. Kept for audit.")


class ApproveForm(forms.Form):
    reason = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional: why the signals do not matter here.",
    )


class RejectForm(forms.Form):
    reason = _reason_field("Why: kept with the referral. The member only sees \u201cnot eligible\u201d.")


REFERRAL_ACTIONS = {"approve": ApproveForm, "reject": RejectForm}


class ReportForm(forms.Form):
    """A period of whole days (at most a year), in the programs' time zone."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, programs=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["program"] = forms.ModelChoiceField(
            queryset=programs, required=False, empty_label="All my programs"
        )
        self.order_fields(["program", "start", "end"])

    @staticmethod
    def default_period(today: date | None = None) -> dict:
        today = today or timezone.localdate()
        return {"start": today - timedelta(days=29), "end": today}

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                self.add_error("end", "The end is before the start.")
            elif (end - start).days >= MAX_REPORT_DAYS:
                self.add_error("end", f"A report covers at most {MAX_REPORT_DAYS} days.")
        return data
