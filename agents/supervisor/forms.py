"""The supervisor screens' filter forms: they parse and validate; the selectors query."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django import forms
from django.utils import timezone

from agents.supervisor.selectors import AuditFilters, visible_sources
from loyalty.access import program_asked, staff_programs
from loyalty.models import Member

CHANGE_TYPES = [("", "Any change"), ("+", "Created (+)"), ("~", "Changed (~)"), ("-", "Deleted (-)")]
EARLIEST_DAY = date(2000, 1, 1)


def _midnight(day: date, tz) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


class AuditFilterForm(forms.Form):
    """The audit browser's filters. Dates are whole days in the program's time zone (the
    site's when no program is chosen); "to" is inclusive."""

    program = forms.ModelChoiceField(queryset=None, required=False, empty_label="All my programs")
    model = forms.ChoiceField(required=False, label="What")
    object_id = forms.IntegerField(required=False, min_value=1, label="Object id")
    member = forms.CharField(required=False, max_length=20, label="Member number")
    author = forms.CharField(
        required=False, max_length=150, label="Who", help_text="A username, or a label like job:expire_points"
    )
    change_type = forms.ChoiceField(required=False, choices=CHANGE_TYPES, label="Change")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["program"].queryset = staff_programs(user).order_by("name")
        self.fields["model"].choices = [("", "Everything")] + [
            (s.label, s.name.capitalize()) for s in visible_sources(user=user)
        ]

    def clean_member(self):
        number = self.cleaned_data["member"].strip()
        if not number:
            return None
        member = Member.objects.filter(
            membership_number=number, program__in=staff_programs(self.user)
        ).first()
        if member is None:
            raise forms.ValidationError("No member with this number in your programs.")
        return member

    def clean(self):
        data = super().clean()
        if data.get("object_id") and not data.get("model"):
            self.add_error("object_id", "Choose what kind of object first.")
        for name in ("since", "until"):
            if data.get(name) and data[name] < EARLIEST_DAY:
                self.add_error(name, f"Give a date after {EARLIEST_DAY:%Y}.")
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end date is before the start date.")
        return data

    def filters(self) -> AuditFilters:
        data = self.cleaned_data
        program = data.get("program")
        tz = program.tz if program else timezone.get_current_timezone()
        return AuditFilters(
            program=program,
            model=data.get("model") or None,
            object_id=data.get("object_id"),
            member=data.get("member"),
            author=(data.get("author") or "").strip(),
            change_type=data.get("change_type") or "",
            since=_midnight(data["since"], tz) if data.get("since") else None,
            until=_midnight(data["until"] + timedelta(days=1), tz) if data.get("until") else None,
        )


class MonthField(forms.DateField):
    """A month as <input type="month"> ("2026-03"), cleaned to its first day."""

    input_formats = ["%Y-%m", "%Y-%m-%d"]
    widget = forms.DateInput(attrs={"type": "month"}, format="%Y-%m")

    def to_python(self, value):
        day = super().to_python(value)
        return day.replace(day=1) if day else day


MAX_MONTHS = 36


class ReportPeriodForm(forms.Form):
    """Which program and which months (inclusive). Defaults: the user's first program, the last
    twelve months including this one."""

    program = forms.ModelChoiceField(queryset=None, empty_label=None)
    start = MonthField(label="From month")
    end = MonthField(label="To month")

    def __init__(self, data=None, *, user, today: date | None = None):
        programs = staff_programs(user).order_by("name")
        first = programs.first()
        # This month is the program's: past midnight on the 1st in its time zone, the new month.
        chosen = program_asked(programs, (data or {}).get("program")) or first
        today = today or timezone.localdate(timezone=chosen.tz if chosen else None)
        this_month = today.replace(day=1)
        start = _add_months(this_month, -11)
        merged = {
            "program": first.pk if first else None,
            "start": f"{start:%Y-%m}",
            "end": f"{this_month:%Y-%m}",
        }
        if data:
            merged.update({k: data[k] for k in ("program", "start", "end") if data.get(k)})
        super().__init__(merged)
        self.fields["program"].queryset = programs

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if start < EARLIEST_DAY:
                self.add_error("start", f"Give a month after {EARLIEST_DAY:%Y}.")
            elif start > end:
                self.add_error("end", "The last month is before the first.")
            elif _months_between(start, end) > MAX_MONTHS:
                self.add_error("end", f"Show at most {MAX_MONTHS} months at once.")
        return data


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _months_between(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month + 1


def months(start: date, end: date) -> list[date]:
    """First days of every month from start to end, inclusive."""
    return [_add_months(start, n) for n in range(_months_between(start, end))]


def add_months(day: date, count: int) -> date:
    return _add_months(day, count)
