from django.urls import path

from loyalty.notifications import views

app_name = "notifications"

urlpatterns = [
    path("me/notifications/", views.preferences, name="preferences"),
    path("webhooks/deliveries/", views.webhook_list, name="webhook_list"),
    path("webhooks/deliveries/<int:pk>/", views.webhook_detail, name="webhook_detail"),
    path("webhooks/deliveries/<int:pk>/resend/", views.webhook_resend, name="webhook_resend"),
]
