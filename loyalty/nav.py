"""The loyalty app's entries in the main navigation (collected by config.nav)."""

from config.nav import NavItem
from loyalty.roles import Role

ITEMS = [
    NavItem("Members", "loyalty:member_search", Role.AGENT, also_current=("loyalty:member_detail",)),
    NavItem(
        "Redemptions", "loyalty:redemption_list", Role.AGENT, also_current=("loyalty:redemption_detail",)
    ),
    NavItem("Shortfalls", "loyalty:shortfall_list", Role.AGENT, also_current=("loyalty:shortfall_detail",)),
]
