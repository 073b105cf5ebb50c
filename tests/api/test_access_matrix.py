"""Every URL of the api, imports and notifications namespaces against every role; never a 500.

Web pages: anonymous -> login (302), wrong role -> 403, another program's object -> 404.
API endpoints: no key -> 401, another program's key -> 404 for objects of program A.
A new URL in these namespaces fails `test_every_url_is_in_the_matrix` until it is listed.
"""

from __future__ import annotations

import pytest
from django.urls import get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from loyalty import ledger, redemptions
from loyalty.api.services import api_key_create
from loyalty.imports.engine import import_create
from loyalty.ledger import Actor
from loyalty.models import Reward
from loyalty.notifications.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

NAMESPACES = ("api", "imports", "notifications")
STAFF, MEMBER, PUBLIC, API = "staff", "member", "public", "api"

# name -> (who, kwargs key, method)
PAGES = {
    "imports:list": (STAFF, None, "get"),
    "imports:new": (STAFF, None, "get"),
    "imports:detail": (STAFF, "batch", "get"),
    "imports:report": (STAFF, "batch", "get"),
    "notifications:preferences": (MEMBER, None, "get"),
    "notifications:webhook_list": (STAFF, None, "get"),
    "notifications:webhook_detail": (STAFF, "delivery", "get"),
    "notifications:webhook_resend": (STAFF, "delivery", "post"),
    "api:schema": (PUBLIC, None, "get"),
    "api:docs": (PUBLIC, None, "get"),
    "api:redoc": (PUBLIC, None, "get"),
    "api:member_create": (API, None, "post"),
    "api:member_detail": (API, "member", "get"),
    "api:member_ledger": (API, "member", "get"),
    "api:redemption_create": (API, "member", "post"),
    "api:events": (API, None, "post"),
    "api:rewards": (API, None, "get"),
    "api:redemption_detail": (API, "redemption", "get"),
    "api:redemption_cancel": (API, "redemption", "post"),
    "api:ping": (API, None, "get"),
}
# For API writes of another program's key: the object is not theirs, so 404 (or 400 for a bare create).
API_OWN_PROGRAM_ONLY = {"member", "redemption"}


@pytest.fixture
def objects(program_a, member_a, agent_a):
    job = Actor.job("test")
    ledger.credit(
        account=member_a.account, points=500, reason="P", actor=job, idempotency_key="p", source="api"
    )
    reward = Reward.objects.create(program=program_a, name="Mug", cost_points=100)
    redemption = redemptions.redemption_request(
        member=member_a, reward=reward, idempotency_key="r", channel="agent", actor=job
    ).redemption
    batch = import_create(program=program_a, kind="transactions", filename="a.csv", content=b"x\n")
    endpoint = WebhookEndpoint.objects.create(program=program_a, url="http://127.0.0.1:9/x", events=["x"])
    item = WebhookDelivery.objects.create(
        endpoint=endpoint,
        program=program_a,
        event="x",
        event_id="1",
        payload={},
        next_attempt_at=timezone.now(),
    )
    return {
        "member": {"number": member_a.membership_number},
        "redemption": {"pk": redemption.pk},
        "batch": {"pk": batch.pk},
        "delivery": {"pk": item.pk},
    }


def test_every_url_is_in_the_matrix():
    names = {
        f"{include.namespace}:{pattern.name}"
        for include in get_resolver().url_patterns
        if getattr(include, "namespace", None) in NAMESPACES
        for pattern in include.url_patterns
    }
    assert names == set(PAGES)


def _users(request):
    f = request.getfixturevalue
    return {
        "anonymous": None,
        "member_a": f("member_a").user,
        "member_b": f("member_b").user,
        "agent_a": f("agent_a"),
        "agent_b": f("agent_b"),
        "supervisor": f("supervisor"),
        "admin": f("admin_user"),
    }


def _expected_page(who, role, kwargs_key, method):
    if who == PUBLIC:
        return {200}
    if role == "anonymous":
        return {302}
    if who == MEMBER:
        return {200, 302} if role in ("member_a", "member_b") else {403}
    # Staff pages.
    if role in ("member_a", "member_b"):
        return {403}
    if role == "agent_b" and kwargs_key:
        return {404}
    if method == "post":
        return {302}
    return {200}


@pytest.mark.parametrize(
    "role", ["anonymous", "member_a", "member_b", "agent_a", "agent_b", "supervisor", "admin"]
)
def test_web_pages(role, request, objects, client):
    users = _users(request)
    for name, (who, kwargs_key, method) in PAGES.items():
        if who == API:
            continue
        if users[role] is not None:
            client.force_login(users[role])
        else:
            client.logout()
        url = reverse(name, kwargs=objects[kwargs_key] if kwargs_key else None)
        response = getattr(client, method)(url)
        assert response.status_code in _expected_page(who, role, kwargs_key, method), (name, role)


@pytest.mark.parametrize("caller", ["no key", "web login", "key of A", "key of B"])
def test_api_endpoints(caller, request, objects, program_a, program_b, client):
    client = APIClient()
    if caller == "web login":
        client.force_login(request.getfixturevalue("admin_user"))
    elif caller != "no key":
        _, raw = api_key_create(program=program_a if caller == "key of A" else program_b, name="k")
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    for name, (who, kwargs_key, method) in PAGES.items():
        if who != API:
            continue
        url = reverse(name, kwargs=objects[kwargs_key] if kwargs_key else None)
        response = getattr(client, method)(url, {}, format="json", HTTP_IDEMPOTENCY_KEY=f"{caller}-{name}")
        if caller in ("no key", "web login"):
            assert response.status_code == 401, (name, caller)
        elif caller == "key of B" and kwargs_key in API_OWN_PROGRAM_ONLY:
            assert response.status_code == 404, (name, caller)
        elif method == "post":
            assert response.status_code == 400, (name, caller, response.content)  # empty body: field errors
        else:
            assert response.status_code == 200, (name, caller)
        assert response["Content-Type"].startswith("application/json")
