import django_tables2 as tables

from loyalty.notifications.models import WebhookDelivery


class WebhookDeliveryTable(tables.Table):
    id = tables.Column(verbose_name="#", linkify=("notifications:webhook_detail", {"pk": tables.A("pk")}))
    created_at = tables.DateTimeColumn(
        verbose_name="Created", format="Y-m-d H:i", attrs={"td": {"class": "nowrap"}}
    )
    program = tables.Column(accessor="program__name", order_by=("program__name", "-id"))
    endpoint = tables.Column(
        accessor="endpoint__url", verbose_name="Endpoint", order_by=("endpoint__url", "-id")
    )
    event = tables.Column()
    status = tables.Column()
    attempts = tables.Column(attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    last_status_code = tables.Column(verbose_name="Last answer")
    next_attempt_at = tables.DateTimeColumn(verbose_name="Next try", format="Y-m-d H:i")

    class Meta:
        model = WebhookDelivery
        fields = ()
        sequence = (
            "id",
            "created_at",
            "program",
            "endpoint",
            "event",
            "status",
            "attempts",
            "last_status_code",
            "next_attempt_at",
        )
        empty_text = "No webhook delivery matches these filters."
