from django.apps import AppConfig


class BrokerConfig(AppConfig):
    name = "broker"
    verbose_name = "Catalog and audit"

    def ready(self) -> None:
        from broker.audit import checkpoints  # noqa: F401 - registers the deploy check of checkpoint destinations
