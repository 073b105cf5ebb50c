import django_tables2 as tables

from loyalty.imports.models import ImportBatch

NUM = {"td": {"class": "num"}, "th": {"class": "num"}}


class ImportTable(tables.Table):
    id = tables.Column(verbose_name="#", linkify=("imports:detail", {"pk": tables.A("pk")}))
    created_at = tables.DateTimeColumn(
        verbose_name="Started", format="Y-m-d H:i", attrs={"td": {"class": "nowrap"}}
    )
    program = tables.Column(accessor="program__name", order_by=("program__name", "-id"))
    filename = tables.Column(verbose_name="File")
    kind = tables.Column()
    status = tables.Column()
    total_rows = tables.Column(verbose_name="Rows", attrs=NUM)
    landed = tables.Column(attrs=NUM)
    skipped = tables.Column(verbose_name="Already imported", attrs=NUM)
    failed = tables.Column(verbose_name="Refused", attrs=NUM)
    run_by = tables.Column(verbose_name="Run by", accessor="actor_label")

    class Meta:
        model = ImportBatch
        fields = ()
        sequence = (
            "id",
            "created_at",
            "program",
            "filename",
            "kind",
            "status",
            "total_rows",
            "landed",
            "skipped",
            "failed",
            "run_by",
        )
        empty_text = "No import matches these filters."
