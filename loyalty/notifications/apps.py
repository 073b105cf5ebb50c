from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "loyalty.notifications"
    label = "notifications"
    verbose_name = "Member notifications and webhooks"

    def ready(self) -> None:
        from loyalty import signals
        from loyalty.notifications import delivery, register

        # Every notify() lands in the message log and fans out to the program's webhooks.
        register(delivery.deliver)
        signals.activity_posted.connect(
            delivery.on_activity_posted, dispatch_uid="notifications-points-posted"
        )
