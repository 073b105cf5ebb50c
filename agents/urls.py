"""The agents app's pages; mounted at the site root, so each path carries its own prefix."""

from django.urls import path

from agents import views

app_name = "agents"

urlpatterns = [
    path("performance/", views.my_performance, name="my_performance"),
    path("performance/leaderboard/", views.leaderboard, name="leaderboard"),
    path("performance/teams/", views.team_list, name="team_list"),
    path("performance/teams/<int:pk>/", views.team_detail, name="team_detail"),
    path("performance/agents/<str:employee_id>/", views.agent_detail, name="agent_detail"),
]
