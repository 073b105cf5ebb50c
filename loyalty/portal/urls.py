"""The member self-service portal, under /me/."""

from django.urls import path

from loyalty.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.portal_home, name="home"),
    path("join/<slug:slug>/", views.signup, name="signup"),
    path("profile/", views.profile, name="profile"),
    path("history/", views.history, name="history"),
    path("where-did-my-points-go/", views.explain, name="explain"),
    path("rewards/", views.rewards, name="rewards"),
    path("rewards/<int:pk>/redeem/", views.redeem, name="redeem"),
    path("redemptions/", views.redemption_list, name="redemption_list"),
    path("redemptions/<int:pk>/", views.redemption_detail, name="redemption_detail"),
    path("redemptions/<int:pk>/cancel/", views.redemption_cancel, name="redemption_cancel"),
]
