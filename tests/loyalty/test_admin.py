"""The admin: members searchable and scoped to the user's programs, the ledger read-only."""

import pytest
from django.urls import reverse

from loyalty import ledger
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, Member, PointsAccount

JOB = Actor.job("test")


@pytest.fixture
def entry(member_a):
    return ledger.credit(
        account=member_a.account,
        points=100,
        reason="Purchase",
        actor=JOB,
        idempotency_key="order-1",
        source="api",
        reference="ORDER-1",
    ).entry


def changelist(client, model, **query):
    response = client.get(reverse(f"admin:loyalty_{model}_changelist"), query)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_an_agent_sees_only_members_of_their_programs(login, agent_a, member_a, member_b, member_of_b):
    assert set(changelist(login(agent_a), "member")) == {member_a, member_b}


def test_an_admin_sees_every_member(login, admin_user, member_a, member_b, member_of_b):
    assert set(changelist(login(admin_user), "member")) == {member_a, member_b, member_of_b}


def test_an_agent_cannot_open_another_programs_member(login, agent_a, member_of_b):
    client = login(agent_a)
    change = client.get(reverse("admin:loyalty_member_change", args=[member_of_b.pk]))
    history = client.get(reverse("admin:loyalty_member_history", args=[member_of_b.pk]))
    assert change.status_code == 302  # the admin redirects "does not exist" to its index
    assert history.status_code == 404


def test_an_agent_sees_the_history_of_their_members(login, agent_a, member_a):
    assert login(agent_a).get(reverse("admin:loyalty_member_history", args=[member_a.pk])).status_code == 200


@pytest.mark.parametrize("query", ["alice", "ALICE", "member-a@example.com", "Member"])
def test_members_are_searchable(login, agent_a, member_a, member_b, query):
    found = changelist(login(agent_a), "member", q=query)
    assert member_a in found


def test_members_are_searchable_by_number_and_phone(login, admin_user, member_a, member_b):
    member_b.phone = "+44 20 7946 0018"
    member_b.save()
    client = login(admin_user)
    assert changelist(client, "member", q=member_a.membership_number) == [member_a]
    assert changelist(client, "member", q="7946") == [member_b]
    assert changelist(client, "member", q="020 7946 0018") == [member_b]  # digits, without the country code


def test_the_program_filter_offers_only_the_agents_programs(login, agent_a, member_a, member_of_b):
    response = login(agent_a).get(reverse("admin:loyalty_member_changelist"))
    body = response.content.decode()
    assert "Program A" in body
    assert "Program B" not in body


def test_the_member_form_offers_only_the_supervisors_programs(login, supervisor, program_b, member_a):
    response = login(supervisor).get(reverse("admin:loyalty_member_add"))
    assert list(response.context["adminform"].form.fields["program"].queryset) == [member_a.program]


def test_a_member_added_in_the_admin_gets_an_account(login, admin_user, program_a):
    response = login(admin_user).post(
        reverse("admin:loyalty_member_add"),
        {
            "program": program_a.pk,
            "membership_number": "79927398713",
            "first_name": "Eve",
            "last_name": "Added",
            "joined_on": "2025-01-01",
            "status": "active",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    member = Member.objects.get(membership_number="79927398713")
    assert PointsAccount.objects.get(member=member).balance == 0
    assert member.history.get().history_user == admin_user


def test_ledger_entries_are_read_only(login, admin_user, entry):
    client = login(admin_user)
    change_url = reverse("admin:loyalty_ledgerentry_change", args=[entry.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    response = client.post(change_url, {"points": 999999, "reason": "Tampered", "_save": "Save"})
    assert response.status_code == 403
    entry.refresh_from_db()
    assert (entry.points, entry.reason) == (100, "Purchase")
    assert client.get(reverse("admin:loyalty_ledgerentry_add")).status_code == 403
    assert (
        client.post(reverse("admin:loyalty_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert LedgerEntry.objects.count() == 1


@pytest.mark.parametrize("model", ["pointsaccount", "ledgerentry", "pointlot", "pointallocation"])
def test_the_ledger_models_cannot_be_added_in_the_admin(login, admin_user, model):
    assert login(admin_user).get(reverse(f"admin:loyalty_{model}_add")).status_code == 403


def test_ledger_entries_are_searchable_by_reference_and_key(login, admin_user, entry, member_a):
    client = login(admin_user)
    assert changelist(client, "ledgerentry", q="ORDER-1") == [entry]
    assert changelist(client, "ledgerentry", q="order-1") == [entry]
    assert changelist(client, "ledgerentry", q="ORDER") == []


@pytest.mark.parametrize("model", ["pointsaccount", "ledgerentry", "pointlot", "pointallocation"])
def test_an_agent_sees_only_their_programs_ledger(login, agent_a, agent_b, entry, model):
    redeemed = ledger.debit(
        account=entry.account, points=10, reason="Reward", actor=JOB, idempotency_key="r1", source="api"
    )
    assert redeemed.entry.allocations.exists()
    assert changelist(login(agent_a), model)
    assert changelist(login(agent_b), model) == []


def test_an_agent_sees_only_their_programs_accounts(login, agent_b, member_a, member_of_b):
    assert changelist(login(agent_b), "pointsaccount") == [member_of_b.account]


def test_an_agent_sees_only_their_programs(login, agent_a, program_a, program_b):
    assert changelist(login(agent_a), "program") == [program_a]
