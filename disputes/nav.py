"""The disputes app's entries in the main navigation (collected by config.nav)."""

from config.nav import MemberAction, NavItem
from loyalty.roles import Role

ITEMS = [
    NavItem(
        "My disputes",
        "disputes:my_list",
        Role.MEMBER,
        also_current=("disputes:my_create", "disputes:my_detail"),
    ),
    NavItem(
        "Disputes",
        "disputes:list",
        Role.AGENT,
        also_current=("disputes:detail", "disputes:history", "disputes:create", "disputes:approvals"),
    ),
]

# A button on the staff member page.
MEMBER_ACTIONS = [MemberAction("Open a dispute", "disputes:create", Role.AGENT)]
