"""The referrals app's entries in the main navigation (collected by config.nav)."""

from config.nav import MemberAction, NavItem
from loyalty.roles import Role

ITEMS = [
    NavItem("My referrals", "referrals:my_referrals", Role.MEMBER),
    NavItem(
        "Referrals",
        "referrals:list",
        Role.AGENT,
        also_current=("referrals:detail", "referrals:attribute", "referrals:report"),
    ),
]

# A button on the staff member page.
MEMBER_ACTIONS = [MemberAction("Attribute a referral", "referrals:attribute", Role.AGENT)]
