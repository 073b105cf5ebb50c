"""Attribution and qualification through the real channels: the integration API and a CSV import."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from loyalty.api.services import api_key_create
from loyalty.imports.engine import import_create, import_run
from loyalty.models import LedgerEntry, Member
from referrals.models import Referral
from tests.referrals.conftest import join

HEADER = "membership_number,type,reference,occurred_at,amount,original_reference\n"


@pytest.fixture
def api(program_a):
    _key, raw = api_key_create(program=program_a, name="pos-a")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


def _rewards(referral):
    return LedgerEntry.objects.filter(subject_id=referral.pk, subject_type__model="referral")


def test_a_member_created_through_the_api_with_a_code_qualifies_with_an_api_purchase(api, code_a, member_a):
    created = api.post(
        "/api/v1/members/",
        {
            "first_name": "Api",
            "last_name": "Friend",
            "email": "api.friend@example.org",
            "referral_code": code_a,
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="m-1",
        HTTP_X_DEVICE_ID="till-7",
    )
    assert created.status_code == 201
    referee = Member.objects.get(membership_number=created.json()["membership_number"])
    referral = Referral.objects.get(referee=referee)
    assert referral.channel == "api" and referral.signup_device_id == "till-7"
    body = {"member": referee.membership_number, "type": "purchase", "reference": "POS-1", "amount": "42.00"}
    assert api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="e-1").status_code == 201
    # The POS retries the same event, and reports it again under a new request key: rewarded once.
    api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    api.post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="e-2")
    referral.refresh_from_db()
    assert referral.status == Referral.Status.REWARDED and _rewards(referral).count() == 2


def test_an_unknown_code_through_the_api_is_a_field_error_and_creates_nobody(api, policy_a):
    response = api.post(
        "/api/v1/members/",
        {"first_name": "Bad", "last_name": "Code", "referral_code": "ZZZZ9999"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="m-2",
    )
    assert response.status_code == 400 and response.json()["field"] == "referral_code"
    assert not Member.objects.filter(first_name="Bad").exists()


def test_an_imported_purchase_qualifies_and_a_re_import_pays_nothing_more(code_a, program_a, member_a):
    referee = join(program_a, code_a)
    # Joined yesterday; the till's file comes in today.
    Referral.objects.filter(referee=referee).update(signed_up_at=timezone.now() - timedelta(days=1))
    moment = timezone.localtime(timezone.now() - timedelta(minutes=30), program_a.tz)
    content = (
        HEADER + f"{referee.membership_number},purchase,TILL-1,{moment:%Y-%m-%d %H:%M},30.00,\n"
    ).encode()
    batch = import_run(
        batch_id=import_create(program=program_a, kind="transactions", filename="a.csv", content=content).pk
    )
    assert batch.landed == 1
    referral = Referral.objects.get(referee=referee)
    assert referral.status == Referral.Status.REWARDED and referral.qualifying_reference == "TILL-1"
    again = import_run(
        batch_id=import_create(program=program_a, kind="transactions", filename="b.csv", content=content).pk
    )
    assert again.landed == 0
    assert _rewards(referral).count() == 2


def test_the_share_link_leads_to_the_portal_sign_up_which_carries_the_device(
    client, code_a, program_a, member_a
):
    from django.urls import reverse

    from referrals.models import ReferralClick

    opened = client.get(f"/r/{code_a}", REMOTE_ADDR="192.0.2.80")
    signup_url = reverse("portal:signup", kwargs={"slug": program_a.slug})
    assert opened["Location"] == f"{signup_url}?ref={code_a}"
    form = client.get(opened["Location"])
    assert code_a in form.content.decode()  # the code is filled in
    joined = client.post(
        signup_url,
        {
            "first_name": "Web",
            "last_name": "Friend",
            "email": "web.friend@example.org",
            "phone": "",
            "password1": "a-long-enough-Passw0rd",
            "password2": "a-long-enough-Passw0rd",
            "referral_code": code_a,
        },
        REMOTE_ADDR="192.0.2.81",
    )
    assert joined.status_code == 302
    referral = Referral.objects.get(referee__email="web.friend@example.org")
    click = ReferralClick.objects.get()
    assert referral.referrer == member_a and referral.channel == "portal"
    assert referral.signup_device_id == click.device_id and referral.click == click
    assert referral.signup_ip == "192.0.2.81"


def test_a_bad_code_on_the_portal_sign_up_is_a_field_error(client, program_a, policy_a):
    from django.urls import reverse

    response = client.post(
        reverse("portal:signup", kwargs={"slug": program_a.slug}),
        {
            "first_name": "Web",
            "last_name": "Friend",
            "email": "web.friend@example.org",
            "password1": "a-long-enough-Passw0rd",
            "password2": "a-long-enough-Passw0rd",
            "referral_code": "NOPE2345",
        },
    )
    assert response.status_code == 400 and "This referral code is not valid" in response.content.decode()
    assert not Member.objects.filter(email="web.friend@example.org").exists()
