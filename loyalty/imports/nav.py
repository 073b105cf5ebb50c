"""The imports app's menu entry (the lead adds this module to config.nav.NAV_MODULES)."""

from config.nav import NavItem
from loyalty.roles import Role

ITEMS = [NavItem("Imports", "imports:list", Role.AGENT, also_current=("imports:new", "imports:detail"))]
