"""The company's OpenID Connect provider as the broker sees it: its Authlib client (discovery document
and keys cached per configuration), and what its tokens say about how a person authenticated.

Used by sign-in (accounts/oidc.py) and by the API's bearer authentication of tokens the provider
issued (accounts/authentication.py); it imports nothing else of accounts.
"""

from __future__ import annotations

from datetime import UTC, datetime

import requests
from authlib.integrations.django_client import DjangoOAuth2App, OAuth
from django.conf import settings
from django.utils import timezone

# Tokens are only ever verified with the provider's public keys: never a shared secret, never "none".
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class IdPError(Exception):
    """The provider or its answer cannot be used; ``reason`` goes to the audit trail."""

    def __init__(self, reason: str, detail: str, status: int = 400):
        super().__init__(detail)
        self.reason, self.detail, self.status = reason, detail, status


def enabled() -> bool:
    return bool(settings.OIDC_ISSUER)


_apps: dict[tuple, DjangoOAuth2App] = {}


def client() -> DjangoOAuth2App:
    """The Authlib client for the configured provider (one per configuration, so metadata and keys are cached)."""
    key = (
        settings.OIDC_ISSUER,
        settings.OIDC_CLIENT_ID,
        settings.OIDC_CLIENT_SECRET,
        tuple(settings.OIDC_SCOPES),
        settings.OIDC_TIMEOUT,
    )
    app = _apps.get(key)
    if app is None:
        app = OAuth().register(
            "idp",
            client_id=settings.OIDC_CLIENT_ID,
            client_secret=settings.OIDC_CLIENT_SECRET or None,
            server_metadata_url=f"{settings.OIDC_ISSUER}/.well-known/openid-configuration",
            client_kwargs={
                "scope": " ".join(settings.OIDC_SCOPES),
                "code_challenge_method": "S256",
                "default_timeout": settings.OIDC_TIMEOUT.total_seconds(),
                "token_endpoint_auth_method": "client_secret_basic" if settings.OIDC_CLIENT_SECRET else "none",
            },
        )
        _apps.clear()
        _apps[key] = app
    return app


def metadata(app: DjangoOAuth2App) -> dict:
    """The discovery document; its issuer must be the one configured (OpenID Connect Discovery, 4.3)."""
    try:
        data = app.load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        raise IdPError("idp_unreachable", f"the identity provider did not answer: {exc}", status=502) from None
    if str(data.get("issuer", "")).rstrip("/") != settings.OIDC_ISSUER:
        raise IdPError(
            "issuer_mismatch",
            f"the discovery document names the issuer {data.get('issuer')!r}, not OIDC_ISSUER",
            status=502,
        )
    # Authlib verifies with the algorithms the document lists; keep only public-key ones.
    listed = data.get("id_token_signing_alg_values_supported") or ["RS256"]
    data["id_token_signing_alg_values_supported"] = [a for a in listed if a in ASYMMETRIC] or ["RS256"]
    return data


def fetch_keys(app: DjangoOAuth2App, *, force: bool = False) -> dict:
    """The provider's JWKS (cached with the metadata; ``force`` reads it again, for a new key id)."""
    try:
        return app.fetch_jwk_set(force=force)
    except (requests.RequestException, ValueError, RuntimeError) as exc:
        raise IdPError("idp_unreachable", f"the provider's keys cannot be read: {exc}", status=502) from None


def _as_time(value) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def strength(claims: dict) -> tuple[bool, datetime | None]:
    """(strong, auth_time): whether the IdP says a strong method was used, and when it authenticated."""
    amr = claims.get("amr") or []
    if isinstance(amr, str):
        amr = [amr]
    amr = [v for v in amr if isinstance(v, str)] if isinstance(amr, list) else []
    acr = claims.get("acr")
    strong = any(v in settings.OIDC_STRONG_AMR for v in amr) or (
        isinstance(acr, str) and acr in settings.OIDC_STRONG_ACR
    )
    return strong, _as_time(claims.get("auth_time"))


def step_up_time(claims: dict, now: datetime | None = None) -> datetime | None:
    """The step-up this ID token stands for (its auth_time), or None when it is not strong or not recent."""
    now = now or timezone.now()
    strong, auth_time = strength(claims)
    if not strong or auth_time is None:
        return None
    if auth_time > now + settings.OIDC_CLOCK_SKEW or now - auth_time > settings.MFA_STEP_UP_WINDOW:
        return None
    return min(auth_time, now)


def verify_bearer_jwt(text: str) -> dict:
    """The claims of a JWT the provider signed for the broker's API (an access token, or an ID token
    when OIDC_API_AUDIENCE is the client id): signature with the provider's keys, ``iss``, ``aud``
    holding OIDC_API_AUDIENCE, ``exp`` (required), ``nbf``/``iat``. Raises IdPError."""
    from joserfc import jwt
    from joserfc.errors import InvalidKeyIdError, JoseError
    from joserfc.jwk import KeySet

    app = client()
    issuer = metadata(app)["issuer"]
    try:
        try:
            token = jwt.decode(text, KeySet.import_key_set(fetch_keys(app)), algorithms=list(ASYMMETRIC))
        except InvalidKeyIdError:
            token = jwt.decode(text, KeySet.import_key_set(fetch_keys(app, force=True)), algorithms=list(ASYMMETRIC))
        jwt.JWTClaimsRegistry(
            leeway=int(settings.OIDC_CLOCK_SKEW.total_seconds()),
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": settings.OIDC_API_AUDIENCE},
            exp={"essential": True},
            sub={"essential": True},
        ).validate(token.claims)
    except (JoseError, ValueError) as exc:
        raise IdPError("token_invalid", f"the token was refused: {exc}", status=401) from None
    return dict(token.claims)
