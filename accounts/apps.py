from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and credentials"

    def ready(self) -> None:
        from accounts import sessions

        sessions.connect()


class BrokerAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with our site (accounts/admin_site.py) as ``admin.site``: second factor required.

    Listed in INSTALLED_APPS instead of "django.contrib.admin"; not the default config of this module.
    """

    default = False
    default_site = "accounts.admin_site.BrokerAdminSite"
