"""Forms of the agent's screens: they parse and validate; the ledger decides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

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


# --- Redemptions ------------------------------------------------------------------


class RedeemForm(forms.Form):
    """An agent redeems a reward for a member. The hidden key makes a double submit redeem once."""

    reward = forms.ModelChoiceField(
        queryset=None,
        widget=forms.RadioSelect,
        empty_label=None,
        error_messages={"invalid_choice": "Choose one of the rewards on offer now."},
    )
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args, rewards, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reward"].queryset = rewards


class RedemptionApproveForm(forms.Form):
    """Approving needs nothing but the click (the service makes a second click a no-op)."""


class RedemptionFulfilForm(forms.Form):
    shipping_note = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Carrier and tracking number.",
    )


class RedemptionReasonForm(forms.Form):
    """Reject or cancel: the reason is shown to the member and kept on the ledger."""

    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_reason(self) -> str:
        return " ".join(self.cleaned_data["reason"].split())


# --- Shortfalls -------------------------------------------------------------------


class ShortfallResolveForm(forms.Form):
    note = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What was decided (written off, adjustment requested, member contacted...).",
    )


# --- Earn preview -----------------------------------------------------------------

MAX_PREVIEW_AMOUNT = Decimal("10000000")
PREVIEW_DAYS_AHEAD = 366


class PreviewForm(forms.Form):
    """'What would this earn?' Read in the program's time zone (the view switches to it)."""

    activity = forms.ChoiceField(choices=())
    amount = forms.DecimalField(
        required=False,
        min_value=Decimal("0.01"),
        max_value=MAX_PREVIEW_AMOUNT,
        max_digits=10,
        decimal_places=2,
        help_text="Purchases: the amount spent. Other activities earn fixed points.",
    )
    occurred_at = forms.DateTimeField(
        label="When",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Empty: now. Promotions and caps depend on it.",
    )

    def __init__(self, *args, activities: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["activity"].choices = activities

    def clean_occurred_at(self) -> datetime | None:
        moment = self.cleaned_data["occurred_at"]
        if moment is None:
            return None
        try:
            local = timezone.localtime(moment)
        except OverflowError:
            raise forms.ValidationError("Pick a moment within the next year.") from None
        if local.date() < EARLIEST_DAY:
            raise forms.ValidationError(f"Pick a moment from {EARLIEST_DAY:%Y-%m-%d} on.")
        if local.date() > timezone.localdate() + timedelta(days=PREVIEW_DAYS_AHEAD):
            raise forms.ValidationError("Pick a moment within the next year.")
        return moment
