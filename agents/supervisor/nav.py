"""The supervisor tools' entries in the main navigation (collected by config.nav)."""

from config.nav import NavItem
from loyalty.roles import Role

ITEMS = [
    NavItem("Audit", "supervisor:audit_list", Role.SUPERVISOR, also_current=("supervisor:audit_detail",)),
    NavItem("Reports", "supervisor:report_index", Role.SUPERVISOR, also_current=("supervisor:report",)),
]
