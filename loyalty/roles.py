"""The back-office roles and the model permissions each group carries.

Groups are created and kept in step by migrations calling `sync_role_groups`,
never by hand. Each later migration that adds models calls it again.
"""

from enum import StrEnum
from importlib import import_module


class Role(StrEnum):
    MEMBER = "member"
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


# Staff roles in increasing power: a supervisor can do what an agent can.
STAFF_RANK = {Role.AGENT: 1, Role.SUPERVISOR: 2, Role.ADMIN: 3}
GROUP_NAMES = {Role.AGENT: "Agent", Role.SUPERVISOR: "Supervisor", Role.ADMIN: "Admin"}

# "app_label.codename" per role; a higher role gets the lower roles' too.
_RULES = ["earningrule", "tier", "promotion", "challenge", "streak", "milestonerule", "reward"]
_AGENT = {
    *(f"loyalty.view_{model}" for model in _RULES),
    "loyalty.view_tierchange",
    "loyalty.view_redemption",
    "loyalty.change_redemption",
    "loyalty.view_pointsshortfall",
    "loyalty.change_pointsshortfall",
    "loyalty.view_program",
    "loyalty.view_member",
    "loyalty.change_member",
    "loyalty.view_historicalmember",
    "loyalty.view_pointsaccount",
    "loyalty.view_ledgerentry",
    "loyalty.view_pointlot",
    "loyalty.view_pointallocation",
    "loyalty.view_purchasereturn",
    "loyalty.view_unpaidactivity",
}
_SUPERVISOR = _AGENT | {
    "loyalty.add_member",
    "loyalty.view_historicalprogram",
    # Supervisors own the program's rules, tiers, promotions and catalogue.
    *(f"loyalty.{action}_{model}" for model in _RULES for action in ("add", "change")),
}
# The other apps declare their own additions in `<app>.permissions`.
_APP_PERMISSIONS = [import_module(f"{app}.permissions") for app in ("disputes", "referrals", "agents")]
_AGENT |= {code for module in _APP_PERMISSIONS for code in module.AGENT}
_SUPERVISOR |= _AGENT | {code for module in _APP_PERMISSIONS for code in module.SUPERVISOR}
ROLE_PERMISSIONS = {
    Role.AGENT: _AGENT,
    Role.SUPERVISOR: _SUPERVISOR,
    # The admin group gets every permission that exists at sync time.
    Role.ADMIN: None,
}


def sync_role_groups_after_migrate(sender, **kwargs) -> None:
    """post_migrate handler: a test flush empties the groups table; put the groups back."""
    from django.apps import apps as global_apps

    sync_role_groups(global_apps)


def sync_role_groups(apps, schema_editor=None) -> None:
    """Create the three groups and set their permissions (a migration operation)."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after migrate; make them exist now.
    # create_permissions skips apps whose models_module is unset (as it is while
    # migrating), so set it for the call and restore the real value after.
    for app_config in global_apps.get_app_configs():
        previous = app_config.models_module
        app_config.models_module = previous or True
        try:
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = previous

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codes in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=GROUP_NAMES[role])
        if codes is None:
            perms = Permission.objects.all()
        else:
            wanted = [code.split(".", 1) for code in codes]
            perms = [
                perm
                for perm in Permission.objects.select_related("content_type")
                if [perm.content_type.app_label, perm.codename] in wanted
            ]
        group.permissions.set(perms)
