"""The referrals app's pages; mounted at the site root, so each path carries its own prefix."""

from django.urls import path

from referrals import views

app_name = "referrals"

urlpatterns = [
    path("r/<str:code>", views.share, name="share"),
    path("me/referrals/", views.my_referrals, name="my_referrals"),
    path("referrals/", views.referral_list, name="list"),
    path("referrals/report/", views.referral_report, name="report"),
    path("referrals/<int:pk>/", views.referral_detail, name="detail"),
    path("referrals/<int:pk>/<slug:action>/", views.referral_action, name="action"),
    path("referrals/attribute/", views.referral_attribute_start, name="attribute_start"),
    path("referrals/attribute/<str:number>/", views.referral_attribute, name="attribute"),
]
