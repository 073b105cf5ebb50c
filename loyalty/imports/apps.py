from django.apps import AppConfig


class ImportsConfig(AppConfig):
    name = "loyalty.imports"
    label = "imports"
    verbose_name = "File imports"

    def ready(self) -> None:
        # The transactions importer registers itself on import.
        from loyalty.imports import transactions  # noqa: F401
