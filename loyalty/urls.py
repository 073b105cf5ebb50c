from django.urls import path

from loyalty import portal_views, views

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
    path("me/", portal_views.portal_home, name="portal_home"),
]
