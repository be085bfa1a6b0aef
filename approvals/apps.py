from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Access requests"

    def ready(self):
        # Any change that can remove eligibility reacts at once (approvals/signals.py).
        from approvals import signals

        signals.connect()
