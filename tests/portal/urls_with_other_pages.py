"""The site's URLs plus a stand-in for a page another app adds under /me/ (for the home page's links)."""

from django.urls import path

from config.urls import urlpatterns as site


def _stand_in(request):  # pragma: no cover - only resolved, never called
    raise AssertionError("not a real page")


urlpatterns = [path("me/referrals/", _stand_in, name="fake_referrals"), *site]
