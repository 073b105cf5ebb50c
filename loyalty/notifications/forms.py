from django import forms

from loyalty.notifications.models import KINDS


class PreferencesForm(forms.Form):
    """One checkbox per kind of message: ticked means 'email me'."""

    def __init__(self, *args, current: dict[str, bool], **kwargs):
        super().__init__(*args, **kwargs)
        for kind, label in KINDS.items():
            self.fields[kind] = forms.BooleanField(
                label=label, required=False, initial=current.get(kind, True)
            )
