import django_filters

from loyalty.filters import _staff_programs
from loyalty.notifications.models import WEBHOOK_EVENTS, WebhookDelivery


class WebhookDeliveryFilter(django_filters.FilterSet):
    program = django_filters.ModelChoiceFilter(queryset=_staff_programs, empty_label="All my programs")
    status = django_filters.ChoiceFilter(choices=WebhookDelivery.Status.choices, empty_label="Any status")
    event = django_filters.ChoiceFilter(choices=list(WEBHOOK_EVENTS.items()), empty_label="Any event")

    class Meta:
        model = WebhookDelivery
        fields = ["program", "status", "event"]
