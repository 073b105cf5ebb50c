"""Supervisor tools, under /supervisor/."""

from django.urls import path

from agents.supervisor import views

app_name = "supervisor"

urlpatterns = [
    path("audit/", views.audit_list, name="audit_list"),
    path("audit/<str:model>/<int:key>/", views.audit_detail, name="audit_detail"),
    path("reports/", views.report_index, name="report_index"),
    path("reports/<slug:slug>/", views.report, name="report"),
]
