from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self) -> None:
        # The KPI importer registers itself with the generic import engine on import.
        from agents import imports  # noqa: F401
