"""The menu and the member page's buttons are assembled from each app's nav module."""

from django.urls import reverse

from config.nav import NAV_MODULES, nav_items


def test_every_menu_entry_resolves_and_each_module_is_collected():
    items = nav_items()
    assert {item.url_name.split(":")[0] for item in items} >= {
        "loyalty",
        "portal",
        "disputes",
        "referrals",
        "agents",
        "supervisor",
        "imports",
        "notifications",
    }
    for item in items:
        reverse(item.url_name)  # raises if an app declares a page that does not exist
    assert len(NAV_MODULES) == len(set(NAV_MODULES))


def test_the_menu_shows_each_role_its_own_entries(login, agent_a, supervisor, member_a):
    agent_menu = login(agent_a).get(reverse("loyalty:member_search")).context["nav"]
    labels = [entry["label"] for entry in agent_menu]
    assert "Members" in labels and "Disputes" in labels
    assert "Audit" not in labels and "My points" not in labels
    current = [entry["label"] for entry in agent_menu if entry["current"]]
    assert current == ["Members"]

    supervisor_menu = login(supervisor).get(reverse("loyalty:member_search")).context["nav"]
    assert "Audit" in [entry["label"] for entry in supervisor_menu]

    member_menu = login(member_a.user).get(reverse("portal:home")).context["nav"]
    member_labels = [entry["label"] for entry in member_menu]
    assert "My points" in member_labels and "My disputes" in member_labels
    assert "Members" not in member_labels


def test_the_member_page_offers_the_other_apps_actions_for_that_member(login, agent_a, member_a):
    page = login(agent_a).get(reverse("loyalty:member_detail", kwargs={"number": member_a.membership_number}))
    html = page.content.decode()
    assert reverse("disputes:create", kwargs={"number": member_a.membership_number}) in html
    assert reverse("referrals:attribute", kwargs={"number": member_a.membership_number}) in html
