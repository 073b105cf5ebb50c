from django.urls import path

from loyalty import views

app_name = "loyalty"

urlpatterns = [
    path("no-role/", views.no_role, name="no_role"),
    path("members/", views.member_search, name="member_search"),
    path("members/<str:number>/", views.member_detail, name="member_detail"),
    path("members/<str:number>/ledger/", views.member_ledger, name="member_ledger"),
    path("members/<str:number>/explain/", views.member_explain, name="member_explain"),
    path("members/<str:number>/balance-on/", views.member_balance_on, name="member_balance_on"),
    path("members/<str:number>/history/", views.member_history, name="member_history"),
    path("members/<str:number>/adjust/", views.member_adjust, name="member_adjust"),
    path("members/<str:number>/redeem/", views.member_redeem, name="member_redeem"),
    path("members/<str:number>/preview/", views.member_preview, name="member_preview"),
    path("redemptions/", views.redemption_list, name="redemption_list"),
    path("redemptions/<int:pk>/", views.redemption_detail, name="redemption_detail"),
    path("redemptions/<int:pk>/<slug:action>/", views.redemption_action, name="redemption_action"),
    path("shortfalls/", views.shortfall_list, name="shortfall_list"),
    path("shortfalls/<int:pk>/", views.shortfall_detail, name="shortfall_detail"),
    path("shortfalls/<int:pk>/resolve/", views.shortfall_resolve_view, name="shortfall_resolve"),
]
