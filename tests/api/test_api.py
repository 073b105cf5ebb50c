"""The integration API: keys, scoping, idempotency, errors, throttling, endpoints."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from loyalty.api.models import ApiKey, IdempotencyRecord
from loyalty.api.services import api_key_revoke
from loyalty.models import LedgerEntry, Member, Redemption

pytestmark = pytest.mark.django_db


def purchase(api, member, reference="R-1", amount="42.50", key="k-1"):
    body = {"member": member.membership_number, "type": "purchase", "amount": amount, "reference": reference}
    return api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


# --- Keys ---------------------------------------------------------------------------


def test_keys_are_stored_hashed_and_revocable(api, key_a, member_a):
    stored = ApiKey.objects.get(pk=key_a.pk)
    assert key_a.raw not in (stored.hashed_key, stored.prefix)
    assert api.get(f"/api/v1/members/{member_a.membership_number}/").status_code == 200
    assert ApiKey.objects.get(pk=key_a.pk).last_used_at is not None
    api_key_revoke(key=stored)
    response = api.get(f"/api/v1/members/{member_a.membership_number}/")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_it_requires_a_key(client, member_a):
    response = client.get(f"/api/v1/members/{member_a.membership_number}/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"


def test_a_wrong_key_is_refused(client, key_a, member_a):
    wrong = key_a.raw[:-3] + "xyz"
    response = client.get(
        f"/api/v1/members/{member_a.membership_number}/", HTTP_AUTHORIZATION=f"Api-Key {wrong}"
    )
    assert response.status_code == 401


def test_another_programs_member_is_a_404(api_b, api, member_a, member_of_b, rules_a):
    assert api_b.get(f"/api/v1/members/{member_a.membership_number}/").status_code == 404
    assert api_b.get(f"/api/v1/members/{member_a.membership_number}/ledger/").status_code == 404
    assert purchase(api_b, member_a).status_code == 404
    assert not LedgerEntry.objects.exists()
    assert api.get(f"/api/v1/members/{member_of_b.membership_number}/").status_code == 404


def test_another_programs_redemption_is_a_404(api, api_b, member_a, rules_a, reward_a):
    purchase(api, member_a, amount="100")
    created = api.post(
        f"/api/v1/members/{member_a.membership_number}/redemptions/",
        {"reward": reward_a.pk},
        format="json",
        HTTP_IDEMPOTENCY_KEY="red-1",
    )
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    assert api_b.get(f"/api/v1/redemptions/{pk}/").status_code == 404
    cancel = api_b.post(
        f"/api/v1/redemptions/{pk}/cancel/", {"reason": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="c"
    )
    assert cancel.status_code == 404
    assert Redemption.objects.get(pk=pk).status == "requested"


# --- Idempotency ---------------------------------------------------------------------


def test_a_replay_returns_the_first_response(api, member_a, rules_a):
    first = purchase(api, member_a)
    assert first.status_code == 201, first.json()
    assert first.json()["points"] == 42
    again = purchase(api, member_a)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert LedgerEntry.objects.count() == 1


def test_the_same_key_with_another_body_is_a_409(api, member_a, rules_a):
    purchase(api, member_a)
    response = purchase(api, member_a, amount="99")
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"
    assert LedgerEntry.objects.count() == 1


def test_idempotency_keys_are_scoped_per_program(api, api_b, member_a, member_of_b, rules_a, program_b):
    from tests.loyalty.factories import EarningRuleFactory

    EarningRuleFactory(program=program_b)
    assert purchase(api, member_a, key="same").status_code == 201
    assert purchase(api_b, member_of_b, key="same").status_code == 201
    assert IdempotencyRecord.objects.count() == 2


def test_writes_need_an_idempotency_key(api, member_a, rules_a):
    body = {"member": member_a.membership_number, "type": "purchase", "amount": "10", "reference": "X"}
    response = api.post("/api/v1/events/", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"
    assert not LedgerEntry.objects.exists()


# --- Errors ---------------------------------------------------------------------------


def test_invalid_fields_are_400_with_field_errors(api, member_a, rules_a):
    body = {"member": member_a.membership_number, "type": "purchase", "amount": "-3", "reference": ""}
    response = api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="bad")
    assert response.status_code == 400
    assert set(response.json()["fields"]) >= {"amount", "reference"}


def test_unknown_activity_is_a_400_with_code(api, member_a, rules_a):
    body = {"member": member_a.membership_number, "type": "dance", "reference": "D1"}
    response = api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="d")
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_activity"
    assert response.json()["field"] == "type"


def test_insufficient_points_is_a_409(api, member_a, reward_a):
    response = api.post(
        f"/api/v1/members/{member_a.membership_number}/redemptions/",
        {"reward": reward_a.pk},
        format="json",
        HTTP_IDEMPOTENCY_KEY="r",
    )
    assert response.status_code == 409
    assert response.json()["code"] == "insufficient_points"
    assert not IdempotencyRecord.objects.exists()


def test_inactive_member_is_a_409(api, member_a, rules_a):
    Member.objects.filter(pk=member_a.pk).update(status="suspended")
    response = purchase(api, member_a)
    assert response.status_code == 409
    assert response.json()["code"] == "member_inactive"


def test_malformed_json_is_a_400(api):
    response = api.post(
        "/api/v1/events/", data="{nope", content_type="application/json", HTTP_IDEMPOTENCY_KEY="m"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


# --- Rate limit -----------------------------------------------------------------------


def test_a_key_past_its_rate_gets_a_429(api, key_a, member_a):
    cache.clear()
    ApiKey.objects.filter(pk=key_a.pk).update(rate_limit="3/hour")
    url = f"/api/v1/members/{member_a.membership_number}/"
    assert [api.get(url).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert api.get(url).json()["code"] == "throttled"


# --- Endpoints -------------------------------------------------------------------------


def test_member_create_get_and_patch(api, program_a):
    created = api.post(
        "/api/v1/members/",
        {"first_name": "Ann", "last_name": "Api", "email": "ANN@Example.com"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="m1",
    )
    assert created.status_code == 201, created.json()
    number = created.json()["membership_number"]
    member = Member.objects.get(membership_number=number)
    assert member.program == program_a and member.email == "ann@example.com"
    assert member.history.first().history_change_reason == "api:pos-a"
    got = api.get(f"/api/v1/members/{number}/").json()
    assert got["balance"] == 0 and got["pending"] == 0 and got["tier"] is None
    patched = api.patch(
        f"/api/v1/members/{number}/", {"phone": "+33 1 23"}, format="json", HTTP_IDEMPOTENCY_KEY="p1"
    )
    assert patched.status_code == 200
    assert Member.objects.get(pk=member.pk).phone == "+33 1 23"


def test_member_create_refused_by_a_listener_is_a_field_error(api, program_a):
    from loyalty import signals
    from loyalty.errors import ApplicationError

    def refuse(sender, referral_code, **kwargs):
        if referral_code:
            raise ApplicationError("Unknown referral code.", code="referral_unknown", field="referral_code")

    signals.member_joined.connect(refuse, dispatch_uid="test-refuse")
    try:
        response = api.post(
            "/api/v1/members/",
            {"first_name": "Bo", "last_name": "B", "referral_code": "NOPE"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="m2",
        )
    finally:
        signals.member_joined.disconnect(dispatch_uid="test-refuse")
    assert response.status_code == 400
    # Whichever receiver refuses it (the referrals app's, or this test's), it is the field's error.
    assert list(response.json()["fields"]) == ["referral_code"]
    assert response.json()["field"] == "referral_code"
    assert not Member.objects.filter(first_name="Bo").exists()


def test_event_answers_points_breakdown_and_balance(api, member_a, rules_a):
    body = purchase(api, member_a, amount="10").json()
    assert body["points"] == 10 and body["balance"] == 10
    assert body["breakdown"]["base"] == 10
    survey = api.post(
        "/api/v1/events/",
        {"member": member_a.membership_number, "type": "survey", "reference": "S1"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="s1",
    ).json()
    assert survey["points"] == 25 and survey["balance"] == 35
    entry = LedgerEntry.objects.get(reference="S1")
    assert entry.source == "api" and entry.actor_label == "api:pos-a"


def test_a_return_takes_back_points(api, member_a, rules_a):
    purchase(api, member_a, reference="P1", amount="100")
    response = api.post(
        "/api/v1/events/",
        {
            "member": member_a.membership_number,
            "type": "return",
            "reference": "RET1",
            "original_reference": "P1",
            "amount": "50",
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="ret",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["points"] == -50 and response.json()["balance"] == 50


def test_ledger_is_paginated(api, member_a, rules_a):
    for n in range(3):
        purchase(api, member_a, reference=f"L{n}", key=f"l{n}", amount="1")
    page = api.get(f"/api/v1/members/{member_a.membership_number}/ledger/?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert page["results"][0]["breakdown"]["activity"] == "purchase"


def test_rewards_redeem_get_and_cancel(api, member_a, rules_a, reward_a, program_b):
    from loyalty.models import Reward

    Reward.objects.create(program=program_b, name="Other", cost_points=1)
    assert [r["name"] for r in api.get("/api/v1/rewards/").json()] == ["Cinema ticket"]
    purchase(api, member_a, amount="100")
    created = api.post(
        f"/api/v1/members/{member_a.membership_number}/redemptions/",
        {"reward": reward_a.pk},
        format="json",
        HTTP_IDEMPOTENCY_KEY="red",
    ).json()
    assert created["status"] == "requested" and created["balance"] == 50
    assert api.get(f"/api/v1/redemptions/{created['id']}/").json()["id"] == created["id"]
    cancelled = api.post(
        f"/api/v1/redemptions/{created['id']}/cancel/",
        {"reason": "Changed mind"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="cancel",
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["balance"] == 100


def test_docs_and_schema_work_offline(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower() and "/static/drf_spectacular_sidecar/" in html
