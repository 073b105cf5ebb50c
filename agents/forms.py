"""The agents app's GET forms: which window a board or a dashboard shows, and for whom."""

from __future__ import annotations

from django import forms

from agents.models import Team
from agents.periods import THIS_MONTH, WINDOW_CHOICES
from loyalty.access import scope_to_staff, staff_programs


class PeriodForm(forms.Form):
    period = forms.ChoiceField(choices=WINDOW_CHOICES, initial=THIS_MONTH, label="Period")

    def __init__(self, data=None, *args, **kwargs):
        # No choice yet means the default window, not an error.
        data = data.copy() if data is not None else {}
        if not data.get("period"):
            data["period"] = THIS_MONTH
        super().__init__(data, *args, **kwargs)


class LeaderboardForm(PeriodForm):
    """The window, and optionally one team or one program among the user's own."""

    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False, empty_label="All teams")
    program = forms.ModelChoiceField(queryset=None, required=False, empty_label="All my programs")

    def __init__(self, data=None, *args, user, **kwargs):
        super().__init__(data, *args, **kwargs)
        self.fields["team"].queryset = scope_to_staff(Team.objects.select_related("program"), user)
        self.fields["team"].label_from_instance = lambda team: f"{team.name} ({team.program.name})"
        self.fields["program"].queryset = staff_programs(user)
