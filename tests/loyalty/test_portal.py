from django.urls import reverse

from loyalty import ledger
from loyalty.ledger import Actor

HOME = reverse("loyalty:portal_home")


def test_a_member_sees_their_own_balance_and_activity(login, member_a, member_b):
    ledger.credit(
        account=member_a.account,
        points=120,
        reason="Purchase in store",
        actor=Actor.job("t"),
        idempotency_key="a1",
        source="api",
    )
    ledger.credit(
        account=member_b.account,
        points=999,
        reason="Someone else's purchase",
        actor=Actor.job("t"),
        idempotency_key="b1",
        source="api",
    )
    page = login(member_a.user).get(HOME)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Purchase in store" in body and member_a.membership_number in body
    assert "Someone else" not in body and "999" not in body


def test_anonymous_visitors_are_sent_to_login(client, db):
    response = client.get(HOME)
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_staff_are_refused_the_member_portal(login, agent_a, member_a):
    assert login(agent_a).get(HOME).status_code == 403
