"""Celery tasks: take ids, call a service, idempotent."""

from celery import shared_task

from loyalty.notifications import delivery
from loyalty.notifications.models import Message


@shared_task(bind=True, max_retries=5, default_retry_delay=60)
def send_message(self, message_id: int) -> str:
    message = delivery.message_send(message_id=message_id)
    if message.status == Message.Status.FAILED and not self.request.is_eager:
        raise self.retry()
    return message.status


@shared_task
def deliver_webhook(delivery_id: int) -> str:
    return delivery.webhook_attempt(delivery_id=delivery_id).status


@shared_task
def send_webhooks() -> dict:
    return delivery.webhooks_send_due()


@shared_task
def notify_expiring_points() -> int:
    return delivery.expiring_points_notify()
