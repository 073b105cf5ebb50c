"""Sign in, sign out, password reset, throttling and CSRF, through the real views.

These tests post real passwords (not force_login) so django-axes and the
authentication backends run as they do in production.
"""

import re

import pytest
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.messages.storage.cookie import CookieStorage
from django.core import mail
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse

from conftest import PASSWORD

LOGIN_URL = reverse("login")


def sign_in(client, username, password=PASSWORD, **extra):
    return client.post(LOGIN_URL, {"username": username, "password": password, **extra})


def signed_in_user_id(client):
    return client.session.get("_auth_user_id")


# --- The login page ---------------------------------------------------------------------------------


def test_it_shows_a_labelled_login_form(client, db):
    response = client.get(LOGIN_URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert '<label for="id_username">' in html
    assert '<label for="id_password">' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert reverse("password_reset") in html
    # The shell: a skip link and the project's own stylesheet, nothing from a CDN.
    assert 'href="#main"' in html
    assert "/static/css/app.css" in html
    assert "https://" not in html


def test_it_sends_anonymous_visitors_of_the_home_page_to_the_login(client, db):
    response = client.get(reverse("home"))

    assert response.status_code == 302
    assert response.url.startswith(LOGIN_URL)


# --- Signing in lands each role on its home ------------------------------------------------------------


def test_an_agent_signs_in_and_lands_on_the_member_search(client, agent_a):
    response = sign_in(client, "agent-a")

    assert response.status_code == 302
    assert response.url == reverse("home")
    landing = client.get(response.url, follow=True)
    assert landing.redirect_chain[-1][0] == reverse("loyalty:member_search")
    assert landing.status_code == 200
    html = landing.content.decode()
    assert f'href="{reverse("loyalty:member_search")}" aria-current="page">Members' in html
    assert "My points" not in html
    assert "Django admin" not in html
    assert signed_in_user_id(client) == str(agent_a.pk)


def test_a_member_signs_in_and_lands_on_their_portal(client, member_a):
    response = sign_in(client, "member-a")

    landing = client.get(response.url, follow=True)

    assert landing.redirect_chain[-1][0] == reverse("portal:home")
    assert landing.status_code == 200
    html = landing.content.decode()
    assert "My points" in html
    assert reverse("loyalty:member_search") not in html
    assert "Django admin" not in html


def test_a_supervisor_sees_the_members_link_but_not_the_django_admin(client, supervisor):
    landing = client.get(sign_in(client, "supervisor").url, follow=True)

    assert landing.redirect_chain[-1][0] == reverse("loyalty:member_search")
    html = landing.content.decode()
    assert ">Members</a>" in html
    assert "Django admin" not in html


def test_an_admin_also_gets_a_link_to_the_django_admin(client, admin_user):
    landing = client.get(sign_in(client, "admin").url, follow=True)

    assert landing.redirect_chain[-1][0] == reverse("loyalty:member_search")
    html = landing.content.decode()
    assert f'href="{reverse("admin:index")}"' in html
    assert "Django admin" in html


def test_it_honours_a_safe_next_url_and_ignores_a_foreign_one(client, agent_a):
    detail_list = reverse("loyalty:member_search") + "?q=alice"
    assert sign_in(client, "agent-a", next=detail_list).url == detail_list

    client.post(reverse("logout"))
    # An open redirect would let a phishing mail bounce a fresh login to another site.
    assert sign_in(client, "agent-a", next="https://evil.example/").url == reverse("home")


def test_a_user_with_no_role_lands_on_a_page_that_explains_it(client, db):
    get_user_model().objects.create_user(username="nobody", password=PASSWORD)

    landing = client.get(sign_in(client, "nobody").url, follow=True)

    assert landing.redirect_chain[-1][0] == reverse("loyalty:no_role")
    assert landing.status_code == 403
    html = landing.content.decode()
    assert "no access yet" in html
    assert f'action="{reverse("logout")}"' in html


def test_it_refuses_a_wrong_password_with_a_message(client, agent_a):
    response = sign_in(client, "agent-a", password="wrong-password")

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert signed_in_user_id(client) is None


# --- Throttling (django-axes) ----------------------------------------------------------------------


def test_it_locks_the_login_after_repeated_failures_even_for_the_right_password(client, agent_a):
    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 5
    for _ in range(limit - 1):
        assert sign_in(client, "agent-a", password="guess").status_code == 200
    sign_in(client, "agent-a", password="guess")  # the limit-th failure locks the account

    response = sign_in(client, "agent-a")

    # A lockout page with 429 Too Many Requests, never a 500 and never a session.
    assert response.status_code == 429
    html = response.content.decode()
    assert "Too many failed sign-in attempts" in html
    assert "agent-a" in html
    assert signed_in_user_id(client) is None
    assert client.get(reverse("loyalty:member_search")).status_code == 302


def test_a_lockout_of_one_account_leaves_other_accounts_alone(client, agent_a, supervisor):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "agent-a", password="guess")

    response = sign_in(client, "supervisor")

    assert response.status_code == 302
    assert signed_in_user_id(client) == str(supervisor.pk)


def test_a_successful_login_resets_the_failure_count(client, agent_a):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "agent-a", password="guess")
    assert sign_in(client, "agent-a").status_code == 302
    client.post(reverse("logout"))

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "agent-a", password="guess")

    assert sign_in(client, "agent-a").status_code == 302


# --- Logout --------------------------------------------------------------------------------------


def test_it_logs_out_by_post_and_returns_to_the_login(client, agent_a):
    sign_in(client, "agent-a")

    response = client.post(reverse("logout"))

    assert response.status_code == 302
    assert response.url == LOGIN_URL
    assert signed_in_user_id(client) is None
    assert client.get(reverse("loyalty:member_search")).status_code == 302


def test_it_refuses_to_log_out_by_get(client, agent_a):
    # A GET logout would let any image tag on any page sign the agent out.
    sign_in(client, "agent-a")

    response = client.get(reverse("logout"))

    assert response.status_code == 405
    assert signed_in_user_id(client) == str(agent_a.pk)


# --- Password reset ----------------------------------------------------------------------------------


def test_it_resets_a_password_through_the_emailed_link(client, member_a):
    response = client.post(reverse("password_reset"), {"email": "MEMBER-A@example.com"})

    assert response.status_code == 302
    assert response.url == reverse("password_reset_done")
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["member-a@example.com"]
    assert email.subject == "Reset your Loyalty back-office password"
    link = re.search(r"https?://testserver(/accounts/reset/\S+/)", email.body).group(1)

    # The emailed link swaps the token for a session and shows the form.
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200
    assert form_page.context["validlink"] is True
    set_password_url = form_page.redirect_chain[-1][0]
    done = client.post(
        set_password_url, {"new_password1": "a-brand-new-pass-42", "new_password2": "a-brand-new-pass-42"}
    )
    assert done.status_code == 302
    assert done.url == reverse("password_reset_complete")
    assert "Your password has been changed" in client.get(done.url).content.decode()

    assert sign_in(client, "member-a", password=PASSWORD).status_code == 200  # the old one is dead
    assert sign_in(client, "member-a", password="a-brand-new-pass-42").status_code == 302


def test_a_reset_link_works_only_once(client, member_a):
    client.post(reverse("password_reset"), {"email": "member-a@example.com"})
    link = re.search(r"https?://testserver(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    set_password_url = client.get(link, follow=True).redirect_chain[-1][0]
    client.post(
        set_password_url, {"new_password1": "first-new-pass-42", "new_password2": "first-new-pass-42"}
    )

    again = Client().get(link, follow=True)

    assert again.status_code == 200
    assert again.context["validlink"] is False
    assert "This link no longer works" in again.content.decode()


def test_it_answers_the_same_for_an_unknown_address_and_sends_nothing(client, member_a):
    # Otherwise the form would tell anyone which addresses have accounts.
    response = client.post(reverse("password_reset"), {"email": "stranger@example.com"})

    assert response.status_code == 302
    assert response.url == reverse("password_reset_done")
    assert mail.outbox == []


def test_it_rejects_a_malformed_address_with_a_field_error(client, db):
    response = client.post(reverse("password_reset"), {"email": "not-an-email"})

    assert response.status_code == 200
    assert 'class="errorlist"' in response.content.decode()
    assert mail.outbox == []


# --- CSRF ----------------------------------------------------------------------------------------


def test_it_refuses_a_login_post_without_a_csrf_token(agent_a):
    client = Client(enforce_csrf_checks=True)

    response = client.post(LOGIN_URL, {"username": "agent-a", "password": PASSWORD})

    assert response.status_code == 403
    assert signed_in_user_id(client) is None


def test_it_accepts_a_login_post_carrying_the_forms_csrf_token(agent_a):
    client = Client(enforce_csrf_checks=True)
    token = str(client.get(LOGIN_URL).context["csrf_token"])

    response = client.post(
        LOGIN_URL, {"username": "agent-a", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )

    assert response.status_code == 302
    assert signed_in_user_id(client) == str(agent_a.pk)


def test_it_refuses_a_logout_post_without_a_csrf_token(agent_a):
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent_a)

    response = client.post(reverse("logout"))

    assert response.status_code == 403
    assert signed_in_user_id(client) == str(agent_a.pk)


@pytest.mark.parametrize(
    "url_name", ["login", "password_reset", "password_reset_done", "password_reset_complete"]
)
def test_every_auth_page_renders_in_the_shell(client, db, url_name):
    response = client.get(reverse(url_name))

    assert response.status_code == 200
    assert 'class="site-header"' in response.content.decode()


# --- The shell ---------------------------------------------------------------------------------------


def test_the_shell_shows_flash_messages_with_their_level(rf, agent_a):
    request = rf.get("/")
    request.user = agent_a
    request._messages = CookieStorage(request)
    messages.success(request, "Adjustment posted.")
    messages.error(request, "That member is closed.")

    html = render_to_string("base.html", request=request)

    assert '<li class="message message-success">Adjustment posted.</li>' in html
    assert '<li class="message message-error">That member is closed.</li>' in html
    assert 'role="status"' in html
