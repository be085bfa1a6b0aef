"""What every page needs to know about sign-in: whether single sign-on is there, and local passwords."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from accounts import stepup


def identity(request: HttpRequest) -> dict:
    sso = bool(settings.OIDC_ISSUER)
    return {
        "sso_enabled": sso,
        "sso_name": settings.OIDC_PROVIDER_NAME,
        "local_login": settings.LOCAL_LOGIN,
        # A person who signed in through the IdP steps up there (OIDC_STEP_UP=idp): pages that ask for
        # a code offer this link as well.
        "idp_step_up_url": (
            stepup.idp_step_up_url(request.get_full_path())
            if sso and hasattr(request, "session") and stepup.idp_step_up(request)
            else ""
        ),
    }
