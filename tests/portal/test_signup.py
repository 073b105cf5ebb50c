"""Joining a program from the portal: a login and a membership in one step, the referral code passed on."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from conftest import PASSWORD
from loyalty import signals
from loyalty.errors import ApplicationError
from loyalty.models import Member
from loyalty.portal import services

User = get_user_model()
NEW_PASSWORD = "Tulip-meadow-4417"


def signup_url(program):
    return reverse("portal:signup", kwargs={"slug": program.slug})


def form(**overrides):
    data = {
        "first_name": "Dana",
        "last_name": "Scully",
        "email": "Dana.Scully@Example.com",
        "phone": "+33 6 12 34 56 78",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
        "referral_code": "",
    }
    data.update(overrides)
    return data


@pytest.fixture
def joined(monkeypatch):
    """Every member_joined sent during the test, heard by this receiver alone.

    The referrals app's own receiver is set aside: these tests are about what the
    portal passes on; the end-to-end attribution is the referrals app's test.
    """
    monkeypatch.setattr(signals.member_joined, "receivers", [])
    monkeypatch.setattr(signals.member_joined, "sender_receivers_cache", {})
    heard = []

    def receiver(sender, member, channel, referral_code, request_meta, **kwargs):
        heard.append({"member": member, "channel": channel, "code": referral_code, "meta": request_meta})
        if referral_code == "NOPE":
            raise ApplicationError("We do not know this referral code.", field="referral_code")

    signals.member_joined.connect(receiver)
    yield heard
    signals.member_joined.disconnect(receiver)


def test_the_form_is_labelled_and_prefills_the_referral_code_from_the_link(client, program_a):
    page = client.get(signup_url(program_a), {"ref": "FRIEND42"})

    assert page.status_code == 200
    html = page.content.decode()
    for field in ("first_name", "last_name", "email", "phone", "password1", "password2", "referral_code"):
        assert f'<label for="id_{field}"' in html
    assert 'value="FRIEND42"' in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_it_creates_the_login_and_the_member_and_signs_them_in(client, program_a, joined):
    response = client.post(signup_url(program_a), form())

    assert response.status_code == 302 and response.url == reverse("portal:home")
    member = Member.objects.get(program=program_a, email="dana.scully@example.com")
    assert (member.first_name, member.last_name, member.phone) == ("Dana", "Scully", "+33 6 12 34 56 78")
    assert member.user.username == "dana.scully@example.com"
    assert member.user.check_password(NEW_PASSWORD)
    assert member.account.balance == 0
    assert client.session["_auth_user_id"] == str(member.user.pk)
    home = client.get(response.url)
    assert home.status_code == 200 and member.membership_number in home.content.decode()
    assert [event["channel"] for event in joined] == ["portal"]


def test_the_referral_code_from_the_link_reaches_member_create(client, program_a, joined):
    client.cookies["ref_device"] = "device-123"
    client.post(
        signup_url(program_a) + "?ref=FRIEND42",
        form(referral_code=" FRIEND42 "),
        HTTP_USER_AGENT="Phone browser",
        REMOTE_ADDR="203.0.113.9",
    )

    assert len(joined) == 1
    event = joined[0]
    assert event["code"] == "FRIEND42"
    assert event["channel"] == "portal"
    assert event["meta"] == {"ip": "203.0.113.9", "user_agent": "Phone browser", "device_id": "device-123"}
    assert event["member"].email == "dana.scully@example.com"


def test_an_unknown_referral_code_is_a_field_error_and_creates_nothing(client, program_a, joined):
    users, members = User.objects.count(), Member.objects.count()

    response = client.post(signup_url(program_a), form(referral_code="NOPE"))

    assert response.status_code == 400
    assert response.context["form"].errors["referral_code"] == ["We do not know this referral code."]
    assert (User.objects.count(), Member.objects.count()) == (users, members)
    assert "_auth_user_id" not in client.session


def test_an_email_already_in_the_program_is_refused(client, member_a, joined):
    members = Member.objects.count()

    response = client.post(signup_url(member_a.program), form(email=member_a.email.upper()))

    assert response.status_code == 409
    assert "already has a membership" in response.context["form"].errors["email"][0]
    assert Member.objects.count() == members
    assert not User.objects.filter(email__iexact="MEMBER-A@EXAMPLE.COM").exclude(pk=member_a.user_id).exists()
    assert joined == []


def test_the_same_email_may_join_another_program_and_signs_in_with_the_number(
    client, program_a, program_b, joined
):
    client.post(signup_url(program_a), form())
    first = Member.objects.get(program=program_a)
    client.logout()

    response = client.post(signup_url(program_b), form())

    assert response.status_code == 302
    second = Member.objects.get(program=program_b)
    # The email already names the first login, so this one is named after the membership number.
    assert first.user.username == "dana.scully@example.com"
    assert second.user.username == second.membership_number
    assert second.user_id != first.user_id


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"password2": "something-else-9"}, "password2"),
        ({"password1": "123", "password2": "123"}, "password1"),
        ({"email": "not-an-email"}, "email"),
        ({"first_name": ""}, "first_name"),
        ({"referral_code": "X" * 41}, "referral_code"),
    ],
)
def test_bad_input_is_a_field_error_and_creates_nothing(client, program_a, overrides, field, joined):
    members = Member.objects.count()

    response = client.post(signup_url(program_a), form(**overrides))

    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert Member.objects.count() == members


def test_an_inactive_or_unknown_program_refuses_sign_up(client, program_a):
    program_a.is_active = False
    program_a.save()

    assert client.get(signup_url(program_a)).status_code == 404
    assert client.post(signup_url(program_a), form()).status_code == 404
    assert client.get(reverse("portal:signup", kwargs={"slug": "no-such-program"})).status_code == 404
    assert not Member.objects.filter(email="dana.scully@example.com").exists()


def test_csrf_stays_on(program_a):
    strict = Client(enforce_csrf_checks=True)

    assert strict.post(signup_url(program_a), form()).status_code == 403
    assert not Member.objects.exists()


def test_a_signed_in_user_is_sent_home(login, member_a):
    response = login(member_a.user).get(signup_url(member_a.program))

    assert response.status_code == 302 and response.url == reverse("home")


def test_one_address_gets_a_limited_number_of_attempts(client, program_a, monkeypatch):
    monkeypatch.setattr(services, "SIGNUP_ATTEMPTS", 2)
    for _attempt in range(2):
        assert client.post(signup_url(program_a), form(password2="x")).status_code == 400

    response = client.post(signup_url(program_a), form())

    assert response.status_code == 429
    assert "Too many sign-up attempts" in response.content.decode()
    assert not Member.objects.filter(email="dana.scully@example.com").exists()


def test_the_new_member_can_sign_in_with_their_email(client, program_a, joined):
    client.post(signup_url(program_a), form())
    client.logout()

    response = client.post(
        reverse("login"), {"username": "dana.scully@example.com", "password": NEW_PASSWORD}
    )

    assert response.status_code == 302
    assert client.get(reverse("portal:home")).status_code == 200


def test_the_login_page_still_works_for_the_cast(client, member_a):
    response = client.post(reverse("login"), {"username": "member-a", "password": PASSWORD})
    assert response.status_code == 302


def test_a_new_member_can_reset_a_forgotten_password_by_email(client, program_a, joined, mailoutbox):
    client.post(signup_url(program_a), form())
    client.logout()

    client.post(reverse("password_reset"), {"email": "dana.scully@example.com"})

    assert [message.to for message in mailoutbox] == [["dana.scully@example.com"]]
