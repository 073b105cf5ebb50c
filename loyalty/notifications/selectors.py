"""Reads for the notification screens."""

from __future__ import annotations

from django.db.models import QuerySet

from loyalty.access import get_for_staff_or_404, scope_to_staff
from loyalty.notifications.models import Message, WebhookDelivery


def webhook_delivery_list(*, user) -> QuerySet[WebhookDelivery]:
    queryset = WebhookDelivery.objects.select_related("program", "endpoint").order_by("-id")
    return scope_to_staff(queryset, user)


def webhook_delivery_get(*, user, pk: int) -> WebhookDelivery:
    return get_for_staff_or_404(WebhookDelivery.objects.select_related("program", "endpoint"), user, pk=pk)


def member_messages(*, member, limit: int = 20) -> list[Message]:
    return list(Message.objects.filter(member=member).order_by("-id")[:limit])
