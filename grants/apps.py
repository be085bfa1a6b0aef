from django.apps import AppConfig


class GrantsConfig(AppConfig):
    name = "grants"
    verbose_name = "Grants"

    def ready(self) -> None:
        from grants import connectors

        # The deployment's connectors (BROKER_CONNECTORS, entry points): a typo stops the start here.
        connectors.load()
