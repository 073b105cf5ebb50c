"""Forms of the member portal: they parse and validate; the services decide."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model, password_validation

from loyalty.models import Member

User = get_user_model()

REFERRAL_CODE_MAX_LENGTH = 40


class SignUpForm(forms.Form):
    first_name = forms.CharField(max_length=80, widget=forms.TextInput(attrs={"autocomplete": "given-name"}))
    last_name = forms.CharField(max_length=80, widget=forms.TextInput(attrs={"autocomplete": "family-name"}))
    email = forms.EmailField(
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
        help_text="We send your password reset links here.",
    )
    phone = forms.CharField(
        label="Phone (optional)",
        max_length=32,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "tel", "type": "tel"}),
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    referral_code = forms.CharField(
        label="Referral code (optional)",
        max_length=REFERRAL_CODE_MAX_LENGTH,
        required=False,
        help_text="The code of the friend who invited you, if any.",
    )

    def clean_first_name(self) -> str:
        return " ".join(self.cleaned_data["first_name"].split())

    def clean_last_name(self) -> str:
        return " ".join(self.cleaned_data["last_name"].split())

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()

    def clean_referral_code(self) -> str:
        return self.cleaned_data["referral_code"].strip()

    def clean(self):
        data = super().clean()
        first, second = data.get("password1"), data.get("password2")
        if first and second and first != second:
            self.add_error("password2", "The two passwords differ.")
        elif first:
            # Judged against the person's own details, as Django's own sign-up form does.
            someone = User(
                username=data.get("email", ""),
                email=data.get("email", ""),
                first_name=data.get("first_name", ""),
                last_name=data.get("last_name", ""),
            )
            try:
                password_validation.validate_password(first, someone)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return data


class ProfileForm(forms.ModelForm):
    """The details a member may change themselves; the rest is the back-office's."""

    class Meta:
        model = Member
        fields = ["first_name", "last_name", "email", "phone"]
        widgets = {
            "first_name": forms.TextInput(attrs={"autocomplete": "given-name"}),
            "last_name": forms.TextInput(attrs={"autocomplete": "family-name"}),
            "email": forms.EmailInput(attrs={"autocomplete": "email"}),
            "phone": forms.TextInput(attrs={"autocomplete": "tel", "type": "tel"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True
        self.fields["email"].help_text = "We send your password reset links here."

    def clean_first_name(self) -> str:
        return " ".join(self.cleaned_data["first_name"].split())

    def clean_last_name(self) -> str:
        return " ".join(self.cleaned_data["last_name"].split())

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()

    def clean_phone(self) -> str:
        return self.cleaned_data["phone"].strip()

    def validate_unique(self):
        pass  # the service checks what must be unique, under a lock

    def _post_clean(self):
        # Validate the fields only: the service assigns and full_cleans the row itself.
        pass


class RedeemConfirmForm(forms.Form):
    """Confirms one redemption. The key is made when the page is shown: sent twice, it redeems once."""

    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)
