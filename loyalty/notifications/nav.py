"""Menu entries of the notifications app (the lead adds this module to config.nav.NAV_MODULES)."""

from config.nav import NavItem
from loyalty.roles import Role

ITEMS = [
    NavItem("My notifications", "notifications:preferences", Role.MEMBER),
    NavItem(
        "Webhooks", "notifications:webhook_list", Role.AGENT, also_current=("notifications:webhook_detail",)
    ),
]
