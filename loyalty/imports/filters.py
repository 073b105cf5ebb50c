import django_filters

from loyalty.filters import _staff_programs
from loyalty.imports.engine import REGISTRY
from loyalty.imports.models import ImportBatch


class ImportFilter(django_filters.FilterSet):
    program = django_filters.ModelChoiceFilter(queryset=_staff_programs, empty_label="All my programs")
    status = django_filters.ChoiceFilter(choices=ImportBatch.Status.choices, empty_label="Any status")
    kind = django_filters.ChoiceFilter(
        choices=lambda: [(kind, importer.label) for kind, importer in sorted(REGISTRY.items())],
        empty_label="Any kind",
    )
    filename = django_filters.CharFilter(lookup_expr="icontains", label="File name")

    class Meta:
        model = ImportBatch
        fields = ["program", "status", "kind", "filename"]
