from django.urls import path

from loyalty import portal_views, views

app_name = "loyalty"

urlpatterns = [
    path("no-role/", views.no_role, name="no_role"),
    path("members/", views.member_search, name="member_search"),
    path("members/<str:number>/", views.member_detail, name="member_detail"),
    path("me/", portal_views.portal_home, name="portal_home"),
]
