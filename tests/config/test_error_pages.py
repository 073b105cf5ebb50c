"""The error pages: 400, 403 and 404 in the back-office shell, 500 standalone.

This module is also the URLconf of its tests (`pytest.mark.urls`): the project's
URLs plus a view that crashes, so the real 500 handler runs.
"""

import pytest
from django.db import connection
from django.template.loader import get_template
from django.test.utils import CaptureQueriesContext
from django.urls import path, reverse

from config.urls import urlpatterns as project_urlpatterns

pytestmark = pytest.mark.urls(__name__)


def crash(request):
    raise RuntimeError("a bug")


urlpatterns = [path("crash/", crash), *project_urlpatterns]


@pytest.fixture(autouse=True)
def production_errors(settings):
    """The handlers only render these templates when DEBUG is off."""
    settings.DEBUG = False


def used(response) -> list[str]:
    return [template.name for template in response.templates]


def test_a_missing_page_is_a_404_in_the_shell(client, db):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert used(response)[:2] == ["404.html", "base.html"]
    body = response.content.decode()
    assert "<title>Page not found · Loyalty back-office</title>" in body
    assert "/no-such-page/" in body
    assert f'href="{reverse("home")}"' in body


def test_the_404_page_keeps_the_navigation_for_a_signed_in_agent(login, agent_a):
    response = login(agent_a).get("/no-such-page/")

    assert response.status_code == 404
    body = response.content.decode()
    assert reverse("loyalty:member_search") in body
    assert "agent-a" in body


def test_another_programs_member_is_the_same_404_page(login, agent_b, member_a):
    response = login(agent_b).get(reverse("loyalty:member_detail", args=[member_a.pk]))

    assert response.status_code == 404
    assert "404.html" in used(response)


def test_a_page_the_role_does_not_allow_is_a_403_that_says_so(login, member_a):
    response = login(member_a.user).get(reverse("loyalty:member_search"))

    assert response.status_code == 403
    assert used(response)[:2] == ["403.html", "base.html"]
    body = response.content.decode()
    assert "Your role does not allow this page" in body
    assert "with the member role" in body
    assert "This page needs the agent role." in body
    assert f'href="{reverse("home")}"' in body


def test_an_admin_page_the_role_does_not_allow_is_the_same_403_page(login, agent_a):
    response = login(agent_a).get(reverse("admin:loyalty_earningrule_add"))

    assert response.status_code == 403
    assert "Your role does not allow this page" in response.content.decode()


def test_a_bad_host_is_a_400_in_the_shell(client, db):
    response = client.get("/", headers={"host": "evil.example"})

    assert response.status_code == 400
    assert used(response)[:2] == ["400.html", "base.html"]
    assert "Bad request" in response.content.decode()


def test_the_500_page_needs_no_context_and_no_database(db):
    with CaptureQueriesContext(connection) as queries:
        html = get_template("500.html").render()

    assert queries.captured_queries == []
    assert "Something went wrong on our side" in html
    assert '<link rel="stylesheet" href="/static/css/app.css">' in html
    assert 'href="/"' in html


def test_the_500_page_stands_alone(db):
    source = get_template("500.html").template.source
    assert "{%" not in source and "{{" not in source  # no tags: nothing that can fail or query


def test_a_crash_answers_the_standalone_500_page_without_touching_the_database(client, db):
    client.raise_request_exception = False

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/crash/")

    assert response.status_code == 500
    assert used(response) == ["500.html"]
    assert "Something went wrong on our side" in response.content.decode()
    assert queries.captured_queries == []
