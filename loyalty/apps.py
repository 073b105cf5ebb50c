from django.apps import AppConfig
from django.db.models.signals import post_migrate


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = "Loyalty programs and points"

    def ready(self) -> None:
        from simple_history.signals import pre_create_historical_record

        from loyalty import lookups  # noqa: F401  (registers field__any)
        from loyalty.audit import label_history_record
        from loyalty.roles import sync_role_groups_after_migrate

        # Migrations create the role groups; this keeps them after a database
        # flush (transactional tests) and in step when permissions change.
        post_migrate.connect(sync_role_groups_after_migrate, sender=self, dispatch_uid="loyalty-role-groups")
        # History written by jobs, commands and API keys says which one wrote it.
        pre_create_historical_record.connect(label_history_record, dispatch_uid="loyalty-audit-label")
