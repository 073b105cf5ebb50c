"""/healthz: a JSON answer a load balancer can act on, 503 when a dependency is down, never a 500."""

import socket
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError, connection
from django.urls import reverse

HEALTHZ = reverse("healthz")


def closed_port() -> int:
    """A local port nothing listens on: bind one, then let it go."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_reports_a_working_database_as_json_without_a_login(client, db, settings):
    # Load balancers and uptime monitors have no session.
    settings.REDIS_URL = ""

    response = client.get(HEALTHZ)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["detail"] == connection.vendor
    # No broker is configured, so none is checked.
    assert "broker" not in body["checks"]


def test_it_answers_503_when_the_broker_is_unreachable(client, db, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"

    response = client.get(HEALTHZ)

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["detail"]  # says why, for whoever reads the monitor
    assert body["checks"]["database"]["ok"] is True


def test_it_answers_503_when_the_database_is_down(client, db, settings):
    settings.REDIS_URL = ""

    with mock.patch.object(connection, "cursor", side_effect=OperationalError("connection refused")):
        response = client.get(HEALTHZ)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["database"] == {"ok": False, "detail": "connection refused"}


def test_it_is_never_cached(client, db):
    response = client.get(HEALTHZ)

    assert "no-cache" in response["Cache-Control"]


def test_it_refuses_a_post_with_405(client, db):
    response = client.post(HEALTHZ)

    assert response.status_code == 405


@pytest.mark.redis
def test_it_reports_a_live_broker_as_ok(client, db):
    response = client.get(HEALTHZ)

    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == {"ok": True, "detail": "redis"}
    assert django_settings.REDIS_URL
