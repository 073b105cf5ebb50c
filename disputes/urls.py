"""The disputes app's pages; mounted at the site root, so each path carries its own prefix."""

from django.urls import path

from disputes import views

app_name = "disputes"

urlpatterns = [
    # Staff
    path("disputes/", views.dispute_list, name="list"),
    path("disputes/take-next/", views.take_next, name="take_next"),
    path("disputes/approvals/", views.approval_list, name="approvals"),
    path("disputes/new/<str:number>/", views.dispute_create, name="create"),
    path("disputes/<int:pk>/", views.dispute_detail, name="detail"),
    path("disputes/<int:pk>/history/", views.dispute_history, name="history"),
    path("disputes/<int:pk>/comment/", views.dispute_comment, name="comment"),
    path("disputes/<int:pk>/move/", views.dispute_move, name="move"),
    path("disputes/<int:pk>/close/", views.dispute_close_view, name="close"),
    path("disputes/<int:pk>/reopen/", views.dispute_reopen_view, name="reopen"),
    path("disputes/<int:pk>/assign/", views.dispute_assign_view, name="assign"),
    path("disputes/<int:pk>/adjust/", views.dispute_adjust, name="adjust"),
    path(
        "disputes/adjustments/<int:pk>/<str:decision>/",
        views.adjustment_decide,
        name="adjustment_decide",
    ),
    # The member's own
    path("me/disputes/", views.my_disputes, name="my_list"),
    path("me/disputes/new/", views.my_dispute_create, name="my_create"),
    path("me/disputes/<int:pk>/", views.my_dispute_detail, name="my_detail"),
    path("me/disputes/<int:pk>/reply/", views.my_dispute_reply, name="my_reply"),
    path("me/disputes/<int:pk>/reopen/", views.my_dispute_reopen, name="my_reopen"),
]
