from django.apps import AppConfig


class ReferralsConfig(AppConfig):
    name = "referrals"
    verbose_name = "Referrals"

    def ready(self) -> None:
        from loyalty import signals
        from referrals import receivers

        signals.member_joined.connect(receivers.on_member_joined, dispatch_uid="referrals-member-joined")
        signals.activity_posted.connect(
            receivers.on_activity_posted, dispatch_uid="referrals-activity-posted"
        )
        signals.activity_batch_members.connect(
            receivers.on_activity_batch_members, dispatch_uid="referrals-activity-batch-members"
        )
