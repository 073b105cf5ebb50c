"""The agents app's entries in the main navigation (collected by config.nav)."""

from config.nav import NavItem
from loyalty.roles import Role

ITEMS = [
    NavItem("My performance", "agents:my_performance", Role.AGENT),
    NavItem("Leaderboard", "agents:leaderboard", Role.AGENT),
    NavItem(
        "Teams",
        "agents:team_list",
        Role.SUPERVISOR,
        also_current=("agents:team_detail", "agents:agent_detail"),
    ),
]
