"""The standing cast every test can use, and the markers for tests that need real services.

Cast: program A and program B; an agent of each; a supervisor and an admin;
member A and member B (both of program A, each with a portal login), and a
member of program B.
"""

import os
import shutil

import pytest
from django.conf import settings
from django.db import connection

from loyalty.models import Program
from loyalty.roles import Role
from loyalty.services import member_create, staff_user_create

PASSWORD = "correct-horse-battery"

# Browser fixtures, shared by every folder with browser tests (one Chromium per session).
pytest_plugins = ["tests.browser"]


def _postgres_available() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _redis_available() -> bool:
    if not settings.REDIS_URL:
        return False
    import redis

    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _browser_available() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return bool(shutil.which(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")))


NEEDS = {
    "postgres": (_postgres_available, "needs PostgreSQL: set DATABASE_URL=postgres://..."),
    "redis": (_redis_available, "needs Redis: set REDIS_URL=redis://..."),
    "browser": (_browser_available, "needs Playwright and Chromium at /usr/bin/chromium"),
}


def pytest_runtest_setup(item):
    strict = getattr(settings, "STRICT_SERVICES", False)
    for name, (available, why) in NEEDS.items():
        if item.get_closest_marker(name) and not available():
            if strict:
                pytest.fail(f"{why} (STRICT_SERVICES=1 forbids skipping)", pytrace=False)
            pytest.skip(why)


@pytest.fixture
def program_a(db):
    return Program.objects.create(
        name="Program A", slug="program-a", currency="EUR", time_zone="Europe/Paris"
    )


@pytest.fixture
def program_b(db):
    return Program.objects.create(
        name="Program B", slug="program-b", currency="USD", time_zone="America/New_York"
    )


@pytest.fixture
def agent_a(program_a):
    return staff_user_create(username="agent-a", role=Role.AGENT, password=PASSWORD, programs=[program_a])


@pytest.fixture
def agent_b(program_b):
    return staff_user_create(username="agent-b", role=Role.AGENT, password=PASSWORD, programs=[program_b])


@pytest.fixture
def supervisor(program_a):
    return staff_user_create(
        username="supervisor", role=Role.SUPERVISOR, password=PASSWORD, programs=[program_a]
    )


@pytest.fixture
def admin_user(db):
    return staff_user_create(username="admin", role=Role.ADMIN, password=PASSWORD)


def _member_with_login(program, username, first_name):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(
        username=username, password=PASSWORD, email=f"{username}@example.com"
    )
    return member_create(
        program=program, first_name=first_name, last_name="Member", email=user.email, user=user
    )


@pytest.fixture
def member_a(program_a):
    return _member_with_login(program_a, "member-a", "Alice")


@pytest.fixture
def member_b(program_a):
    return _member_with_login(program_a, "member-b", "Bob")


@pytest.fixture
def member_of_b(program_b):
    return member_create(program=program_b, first_name="Carol", last_name="Other", email="carol@example.com")


@pytest.fixture
def login(client):
    """Log `client` in as a user (no password round trip, so no axes throttling)."""

    def _login(user):
        client.force_login(user)
        return client

    return _login


@pytest.fixture
def on_postgres():
    return connection.vendor == "postgresql"
