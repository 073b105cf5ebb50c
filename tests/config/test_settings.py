"""Each settings module, loaded the way a server loads it: in a fresh process with a chosen environment.

The environment is built from scratch (only PATH and HOME survive), so a
DATABASE_URL or REDIS_URL exported in the shell or by CI cannot leak in.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
# Long and random-looking enough for check --deploy's secret key check.
DUMMY_SECRET = "ci-only-9f3b1c7e5a2d8b6f0e4c1a7d3b9e5f2c8a6d0b4e1f7c3a9d5b2e8f6c0a4d1"


def run_python(settings_module, code, **env):
    clean_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": settings_module,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_of(settings_module, names, **env):
    """The named settings as a process with this environment sees them."""
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}, default=str))"
    )
    result = run_python(settings_module, code, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def start_django(settings_module, **env):
    return run_python(settings_module, "import django; django.setup()", **env)


# --- Production ------------------------------------------------------------------------------------


def test_production_refuses_to_start_without_a_secret_key():
    result = start_django("config.settings.production", DJANGO_ALLOWED_HOSTS="loyalty.example.com")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = start_django("config.settings.production", DJANGO_SECRET_KEY=DUMMY_SECRET)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_ALLOWED_HOSTS" in result.stderr


def test_production_refuses_to_start_with_an_empty_host_list():
    result = start_django(
        "config.settings.production", DJANGO_SECRET_KEY=DUMMY_SECRET, DJANGO_ALLOWED_HOSTS=""
    )

    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS" in result.stderr


def test_production_starts_with_a_secret_and_hosts_and_locks_things_down():
    values = settings_of(
        "config.settings.production",
        ["DEBUG", "ALLOWED_HOSTS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT"],
        DJANGO_SECRET_KEY=DUMMY_SECRET,
        DJANGO_ALLOWED_HOSTS="loyalty.example.com,backoffice.example.com",
    )

    assert values == {
        "DEBUG": False,
        "ALLOWED_HOSTS": ["loyalty.example.com", "backoffice.example.com"],
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
    }


def test_production_keeps_database_connections_and_checks_them_before_reuse():
    code = (
        "import json, django; django.setup(); from django.db import connection; "
        "print(json.dumps([connection.settings_dict['CONN_MAX_AGE'], "
        "connection.settings_dict['CONN_HEALTH_CHECKS']]))"
    )
    result = run_python(
        "config.settings.production",
        code,
        DJANGO_SECRET_KEY=DUMMY_SECRET,
        DJANGO_ALLOWED_HOSTS="loyalty.example.com",
        CONN_MAX_AGE="30",
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [30, True]


def test_the_deploy_check_passes_under_production_settings():
    result = run_python(
        "config.settings.production",
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        DJANGO_SECRET_KEY=DUMMY_SECRET,
        DJANGO_ALLOWED_HOSTS="loyalty.example.com",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


# --- Local: nothing installed needed -----------------------------------------------------------------


def test_local_settings_need_no_services_by_default():
    values = settings_of(
        "config.settings.local",
        ["DEBUG", "DATABASES", "CELERY_TASK_ALWAYS_EAGER", "CELERY_BROKER_URL", "EMAIL_BACKEND", "CACHES"],
    )

    assert values["DEBUG"] is True
    assert values["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    # The SQLite file lives in the git-ignored db/ folder, not next to the code.
    assert Path(values["DATABASES"]["default"]["NAME"]).parent == BASE_DIR / "db"
    assert values["CELERY_TASK_ALWAYS_EAGER"] is True
    assert values["CELERY_BROKER_URL"] == "memory://localhost/"
    assert values["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    assert values["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


def test_local_settings_switch_to_postgres_and_redis_when_their_urls_are_set():
    # Reading settings connects to nothing, so the URLs need not point at live servers.
    values = settings_of(
        "config.settings.local",
        ["DATABASES", "CELERY_TASK_ALWAYS_EAGER", "CELERY_BROKER_URL", "CACHES"],
        DATABASE_URL="postgres://loyalty@db.internal:5432/loyalty",
        REDIS_URL="redis://cache.internal:6379/0",
    )

    assert values["DATABASES"]["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert values["DATABASES"]["default"]["NAME"] == "loyalty"
    assert values["CELERY_TASK_ALWAYS_EAGER"] is False
    assert values["CELERY_BROKER_URL"] == "redis://cache.internal:6379/0"
    assert values["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"


def test_local_settings_send_email_by_smtp_when_email_url_is_set():
    values = settings_of(
        "config.settings.local",
        ["EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT"],
        EMAIL_URL="smtp://mail.internal:2525",
    )

    assert values == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "mail.internal",
        "EMAIL_PORT": 2525,
    }
