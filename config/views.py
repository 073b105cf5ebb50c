"""Project-level views: the role-aware home redirect and the health check."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from loyalty.access import user_role
from loyalty.roles import Role

HOME_BY_ROLE = {
    Role.MEMBER: "portal:home",
    Role.AGENT: "loyalty:member_search",
    Role.SUPERVISOR: "loyalty:member_search",
    Role.ADMIN: "loyalty:member_search",
}


@login_required
def home(request):
    role = user_role(request.user)
    if role is None:
        # A login with no role yet: nothing to show but a clear message.
        return redirect("loyalty:no_role")
    return redirect(HOME_BY_ROLE[role])


def _database_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, connection.vendor
    except Exception as exc:  # any failure means "down"; the message says why
        return False, str(exc)


def _broker_ok() -> tuple[bool, str]:
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
        return True, "redis"
    except Exception as exc:
        return False, str(exc)


@never_cache
@require_GET
def healthz(request):
    checks = {}
    ok, detail = _database_ok()
    checks["database"] = {"ok": ok, "detail": detail}
    if settings.REDIS_URL:
        ok, detail = _broker_ok()
        checks["broker"] = {"ok": ok, "detail": detail}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", "checks": checks}, status=200 if healthy else 503
    )
