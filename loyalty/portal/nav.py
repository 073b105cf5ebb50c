"""The portal's entries in the main navigation (collected by config.nav)."""

from config.nav import NavItem
from loyalty.roles import Role

ITEMS = [
    NavItem("My points", "portal:home", Role.MEMBER, also_current=("portal:explain",)),
    NavItem("History", "portal:history", Role.MEMBER),
    NavItem(
        "Rewards",
        "portal:rewards",
        Role.MEMBER,
        also_current=("portal:redeem", "portal:redemption_list", "portal:redemption_detail"),
    ),
    NavItem("Profile", "portal:profile", Role.MEMBER),
]
