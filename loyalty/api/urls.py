from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from loyalty.api import views

app_name = "api"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    path("v1/members/", views.MemberCreateView.as_view(), name="member_create"),
    path("v1/members/<str:number>/", views.MemberDetailView.as_view(), name="member_detail"),
    path("v1/members/<str:number>/ledger/", views.MemberLedgerView.as_view(), name="member_ledger"),
    path(
        "v1/members/<str:number>/redemptions/", views.RedemptionCreateView.as_view(), name="redemption_create"
    ),
    path("v1/events/", views.EventView.as_view(), name="events"),
    path("v1/rewards/", views.RewardListView.as_view(), name="rewards"),
    path("v1/redemptions/<int:pk>/", views.RedemptionDetailView.as_view(), name="redemption_detail"),
    path("v1/redemptions/<int:pk>/cancel/", views.RedemptionCancelView.as_view(), name="redemption_cancel"),
    path("v1/ping/", views.PingView.as_view(), name="ping"),
]
