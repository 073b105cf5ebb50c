from django.urls import path

from loyalty.imports import views

app_name = "imports"

urlpatterns = [
    path("imports/", views.import_list, name="list"),
    path("imports/new/", views.import_new, name="new"),
    path("imports/<int:pk>/", views.import_detail, name="detail"),
    path("imports/<int:pk>/report.csv", views.import_report, name="report"),
]
