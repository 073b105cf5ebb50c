from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from config import views

admin.site.site_header = "Loyalty back-office administration"
admin.site.site_title = "Loyalty back-office"
admin.site.index_title = "Programs, members and the points ledger"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("", include("loyalty.urls")),
    path("me/", include("loyalty.portal.urls")),
    path("supervisor/", include("agents.supervisor.urls")),
    path("", include("disputes.urls")),
    path("", include("referrals.urls")),
    path("", include("agents.urls")),
    path("api/", include("loyalty.api.urls")),
    path("", include("loyalty.imports.urls")),
    path("", include("loyalty.notifications.urls")),
]

if settings.DEBUG:
    from django.contrib.staticfiles.urls import staticfiles_urlpatterns

    urlpatterns += staticfiles_urlpatterns()
