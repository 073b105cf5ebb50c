"""Agent KPI records from the contact-centre system's CSV export, on the generic import engine.

Columns: employee_id, period, contacts_handled (required); talk_seconds, hold_seconds,
after_contact_seconds, survey_answers, satisfied_answers, issues, resolved_first_contact
(optional, 0 when empty). `period` is a day (2026-10-05) or a whole month (2026-10); an agent
sends one kind per month. Counts are whole numbers >= 0; the definitions are in agents.models.

A row names an agent of a team of the program the file is imported into. Re-importing the same
file changes nothing (the engine's keys carry the file's hash); a later export with corrected
counts for a period replaces that period's counts (history keeps the old ones) and the next
awards run posts the difference. Only supervisors and admins import KPIs: an agent does not
report their own numbers.
"""

from __future__ import annotations

import re
from datetime import date

from django import forms

from agents.models import AgentProfile, KpiRecord
from agents.services import KPI_COUNTS, KpiInput, kpi_records_upsert
from loyalty.access import has_role
from loyalty.imports.engine import Importer, Row, RowError, RowForm, register
from loyalty.roles import Role

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")


class KpiRowForm(RowForm):
    employee_id = forms.CharField(max_length=32)
    period = forms.CharField(max_length=10, help_text="A day (2026-10-05) or a month (2026-10).")
    contacts_handled = forms.IntegerField(min_value=0)
    talk_seconds = forms.IntegerField(min_value=0, required=False)
    hold_seconds = forms.IntegerField(min_value=0, required=False)
    after_contact_seconds = forms.IntegerField(min_value=0, required=False)
    survey_answers = forms.IntegerField(min_value=0, required=False)
    satisfied_answers = forms.IntegerField(min_value=0, required=False)
    issues = forms.IntegerField(min_value=0, required=False)
    resolved_first_contact = forms.IntegerField(min_value=0, required=False)

    def clean_period(self):
        value = self.cleaned_data["period"]
        try:
            if _DAY.match(value):
                return KpiRecord.Kind.DAY.value, date.fromisoformat(value)
            if _MONTH.match(value):
                return KpiRecord.Kind.MONTH.value, date.fromisoformat(f"{value}-01")
        except ValueError:
            pass
        raise forms.ValidationError("Give a day like 2026-10-05 or a month like 2026-10.")

    def clean(self):
        data = super().clean()
        for name in KPI_COUNTS:
            if name not in self.errors and data.get(name) is None:
                data[name] = 0
        if data.get("satisfied_answers", 0) > data.get("survey_answers", 0):
            self.add_error("satisfied_answers", "More satisfied answers than survey answers.")
        if data.get("resolved_first_contact", 0) > data.get("issues", 0):
            self.add_error("resolved_first_contact", "More first-contact resolutions than issues.")
        return data


@register
class KpiImporter(Importer):
    kind = "agent_kpis"
    label = "Agent KPI records (contact centre)"
    form_class = KpiRowForm
    required_columns = ("employee_id", "period", "contacts_handled")
    optional_columns = tuple(name for name in KPI_COUNTS if name != "contacts_handled")
    description = __doc__

    def key(self, data) -> str:
        # The file's hash is in the key: the same file again is skipped, a corrected export lands.
        kind, start = data["period"]
        return f"{self.batch.sha256[:16]}:{data['employee_id']}:{kind}:{start.isoformat()}"

    def land(self, rows: list[Row]) -> list[RowError]:
        user = self.batch.created_by
        if user is not None and not has_role(user, Role.SUPERVISOR):
            return [RowError(row.line, "", "Only supervisors import KPI records.", row.key) for row in rows]
        agents = {
            agent.employee_id: agent
            for agent in AgentProfile.objects.filter(
                employee_id__in={row.data["employee_id"] for row in rows}, team__program=self.program
            )
        }
        refused, inputs, lines = [], [], []
        for row in rows:
            agent = agents.get(row.data["employee_id"])
            if agent is None:
                refused.append(
                    RowError(
                        row.line, "employee_id", f"No agent of a {self.program} team has this id.", row.key
                    )
                )
                continue
            kind, start = row.data["period"]
            counts = {name: row.data[name] for name in KPI_COUNTS}
            inputs.append(KpiInput(agent=agent, kind=kind, period_start=start, counts=counts))
            lines.append(row)
        result = kpi_records_upsert(inputs=inputs, source=KpiRecord.Source.IMPORT)
        for index, error in result.errors.items():
            row = lines[index]
            refused.append(RowError(row.line, error.field or "", error.message, row.key))
        return refused
