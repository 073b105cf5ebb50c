"""Forms of the dispute screens: they parse and validate; the services decide."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib.auth import get_user_model

from disputes.models import Dispute, Priority
from loyalty.forms import MAX_ADJUSTMENT

STAFF_MOVES = [
    (Dispute.Status.IN_PROGRESS, "In progress"),
    (Dispute.Status.AWAITING_MEMBER, "Awaiting member (pauses the SLA clock)"),
    (Dispute.Status.ESCALATED, "Escalated (tells the supervisors)"),
]


class StaffDisputeForm(forms.Form):
    """An agent opens a ticket for a member who phoned or wrote."""

    category = forms.ChoiceField(choices=Dispute.Category.choices)
    subject = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=5000)
    priority = forms.TypedChoiceField(choices=Priority.choices, coerce=int, initial=Priority.NORMAL)
    disputed_on = forms.DateField(
        required=False,
        label="Day it went wrong",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional: the balance on that day is shown beside the ticket.",
    )


class MemberDisputeForm(forms.Form):
    """A member opens a ticket about their points, optionally about one of their own entries."""

    category = forms.ChoiceField(label="What is it about?", choices=Dispute.Category.choices)
    subject = forms.CharField(label="In a few words", max_length=120)
    description = forms.CharField(
        label="What happened?", widget=forms.Textarea(attrs={"rows": 5}), max_length=5000
    )
    related_entry = forms.ModelChoiceField(
        label="Which entry of your history (optional)",
        queryset=None,
        required=False,
        empty_label="None in particular",
    )

    def __init__(self, *args, entries=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Only the member's own entries are offered, and only those are accepted.
        self.fields["related_entry"].queryset = entries
        self.fields["related_entry"].label_from_instance = lambda e: (
            f"{e.occurred_at:%Y-%m-%d} · {e.get_kind_display()} {e.points:+,d} · {e.reason[:60]}"
        )


class CommentForm(forms.Form):
    body = forms.CharField(label="Message", widget=forms.Textarea(attrs={"rows": 4}), max_length=5000)
    internal = forms.BooleanField(
        required=False, label="Internal note (the member never sees it)", initial=False
    )
    await_member = forms.BooleanField(
        required=False, label="Wait for the member's answer (pauses the SLA clock)"
    )


class MemberReplyForm(forms.Form):
    body = forms.CharField(label="Your message", widget=forms.Textarea(attrs={"rows": 4}), max_length=5000)


class ReopenForm(forms.Form):
    reason = forms.CharField(
        label="Why reopen it?", widget=forms.Textarea(attrs={"rows": 3}), max_length=2000, required=False
    )


class MoveForm(forms.Form):
    status = forms.ChoiceField(label="Move to", choices=STAFF_MOVES)


class CloseForm(forms.Form):
    outcome = forms.ChoiceField(
        label="Outcome",
        choices=[
            (Dispute.Status.RESOLVED, "Resolved"),
            (Dispute.Status.REJECTED, "Rejected (claim declined)"),
        ],
    )
    resolution = forms.CharField(
        label="Message to the member",
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=5000,
        help_text="The member reads this as the final reply.",
    )


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(label="Assign to", queryset=None, required=False, empty_label="Nobody")

    def __init__(self, *args, staff=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = staff if staff is not None else get_user_model().objects.none()


class AdjustmentRequestForm(forms.Form):
    """A correction; the hidden key is made when the form is shown, so a double submit makes one request."""

    points = forms.IntegerField(
        min_value=-MAX_ADJUSTMENT,
        max_value=MAX_ADJUSTMENT,
        help_text="Positive adds points, negative removes them.",
    )
    reason = forms.CharField(max_length=450, widget=forms.Textarea(attrs={"rows": 2}))
    request_key = forms.UUIDField(widget=forms.HiddenInput)

    @classmethod
    def fresh(cls) -> AdjustmentRequestForm:
        return cls(initial={"request_key": uuid.uuid4()})

    def clean_points(self) -> int:
        if self.cleaned_data["points"] == 0:
            raise forms.ValidationError("An adjustment must add or remove at least one point.")
        return self.cleaned_data["points"]


class DecisionForm(forms.Form):
    reason = forms.CharField(
        label="Reason (required to reject)",
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
