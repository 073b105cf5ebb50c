from __future__ import annotations

from django import forms

from loyalty.access import staff_programs
from loyalty.imports.engine import MAX_FILE_BYTES, REGISTRY


class ImportUploadForm(forms.Form):
    program = forms.ModelChoiceField(queryset=None, help_text="The program the rows belong to.")
    kind = forms.ChoiceField(label="What the file holds", choices=())
    file = forms.FileField(help_text="CSV, UTF-8, with a header line. At most 50 MB.")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["program"].queryset = staff_programs(user).filter(is_active=True)
        self.fields["kind"].choices = [(kind, importer.label) for kind, importer in sorted(REGISTRY.items())]

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError("The file is over 50 MB.")
        return upload
