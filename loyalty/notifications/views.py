"""A member's notification preferences; the agents' webhook delivery log with resend."""

from __future__ import annotations

import json

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from loyalty.access import get_for_member_or_404, role_required
from loyalty.models import Member
from loyalty.notifications import delivery, selectors
from loyalty.notifications.filters import WebhookDeliveryFilter
from loyalty.notifications.forms import PreferencesForm
from loyalty.notifications.tables import WebhookDeliveryTable
from loyalty.roles import Role
from loyalty.views import StaffQueueView


@role_required(Role.MEMBER)
def preferences(request):
    member = get_for_member_or_404(Member.objects.select_related("program"), request.user, member_field="")
    current = delivery.preferences_of(member=member)
    form = PreferencesForm(request.POST or None, current=current)
    if request.method == "POST" and form.is_valid():
        delivery.preferences_set(member=member, choices=form.cleaned_data)
        messages.success(request, "Your notification choices are saved.")
        return redirect("notifications:preferences")
    with timezone.override(member.program.tz):
        return render(
            request,
            "notifications/preferences.html",
            {"form": form, "member": member, "recent": selectors.member_messages(member=member)},
        )


class WebhookDeliveryListView(StaffQueueView):
    table_class = WebhookDeliveryTable
    filterset_class = WebhookDeliveryFilter
    template_name = "notifications/webhook_list.html"
    export_name = "webhook-deliveries"

    def get_queryset(self):
        return selectors.webhook_delivery_list(user=self.request.user)


webhook_list = WebhookDeliveryListView.as_view()


@role_required(Role.AGENT)
def webhook_detail(request, pk: int):
    item = selectors.webhook_delivery_get(user=request.user, pk=pk)
    with timezone.override(item.program.tz):
        return render(
            request,
            "notifications/webhook_detail.html",
            {
                "delivery": item,
                "attempts": list(item.attempt_log.all()),
                "payload": json.dumps(item.payload, indent=2, sort_keys=True),
                "time_zone": item.program.time_zone,
            },
        )


@require_POST
@role_required(Role.AGENT)
def webhook_resend(request, pk: int):
    item = selectors.webhook_delivery_get(user=request.user, pk=pk)
    item = delivery.webhook_resend(delivery=item)
    messages.info(request, f"Sent again: {item.get_status_display().lower()}.")
    return redirect(item)
