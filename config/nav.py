"""The main navigation, assembled from each app's `nav.ITEMS`.

Apps declare their own entries, so adding a page never means editing the
shared base template; the context processor keeps only what the user's role
may open and marks the current page for `aria-current`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from django.urls import reverse

from loyalty.access import has_role
from loyalty.roles import Role

# Order of the menu: the member-facing portal, then staff work, then reports.
NAV_MODULES = (
    "loyalty.portal.nav",
    "loyalty.nav",
    "disputes.nav",
    "referrals.nav",
    "loyalty.imports.nav",
    "loyalty.notifications.nav",
    "agents.nav",
    "agents.supervisor.nav",
)


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str  # "namespace:name" of a page without URL arguments
    minimum: Role  # Role.MEMBER: members only; a staff role: that role or a stronger one
    # Other "namespace:name" pages under this entry (its detail pages, say).
    also_current: tuple[str, ...] = ()

    def is_current(self, match) -> bool:
        if match is None:
            return False
        return match.view_name == self.url_name or match.view_name in self.also_current


@dataclass(frozen=True)
class MemberAction:
    """A button on the staff member page leading to another app's page for that member."""

    label: str
    url_name: str  # takes the membership number as `number`
    minimum: Role


def member_actions(user, member) -> list[dict]:
    """The other apps' buttons for `member` that `user`'s role may open (apps' `MEMBER_ACTIONS`)."""
    return [
        {"label": action.label, "url": reverse(action.url_name, kwargs={"number": member.membership_number})}
        for module in NAV_MODULES
        for action in getattr(import_module(module), "MEMBER_ACTIONS", ())
        if has_role(user, action.minimum)
    ]


def nav_items() -> list[NavItem]:
    return [item for module in NAV_MODULES for item in import_module(module).ITEMS]


def nav_context(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav": []}
    match = getattr(request, "resolver_match", None)
    return {
        "nav": [
            {"label": item.label, "url": reverse(item.url_name), "current": item.is_current(match)}
            for item in nav_items()
            if has_role(user, item.minimum)
        ]
    }
