"""Sign-in through the company's OpenID Connect provider, and step-up from it (Authlib).

The authorization code flow, with what Authlib does for us and what we add:

- ``/account/oidc/login/`` sends the browser to the provider's authorization endpoint (from the
  discovery document of OIDC_ISSUER, read on first use) with ``state``, a ``nonce`` and a PKCE
  challenge (S256). Authlib keeps the state, the nonce and the code verifier in the session.
- ``/account/oidc/callback/`` takes the code back: the state must be one this session started; the
  code is exchanged with the code verifier (and the client secret, unless the client is public);
  the ID token's signature is verified against the provider's JWKS (fetched again when an unknown
  key id appears), then its claims: ``iss`` equal to the discovery document's issuer (which must be
  OIDC_ISSUER), ``aud`` holding OIDC_CLIENT_ID (and ``azp`` when there are several audiences),
  ``exp``/``iat``, and the ``nonce`` of this very attempt. Anything else is refused and audited
  (``auth.sso_refused``); it never signs anyone in.
- The person is found by the subject (OIDC_SUBJECT_CLAIM), created or updated from the claims, and
  their managed groups set from the groups claim (accounts/identity.py): a group gone at the IdP
  is gone here, with the reaction to lost eligibility.

Step-up: an ID token whose ``auth_time`` is within MFA_STEP_UP_WINDOW and whose ``amr`` holds one of
OIDC_STRONG_AMR (or whose ``acr`` is one of OIDC_STRONG_ACR) marks the session as stepped up at
``auth_time``, exactly like a one-time code (accounts.stepup). When a sensitive step needs a
fresh factor, a person who signed in through the IdP is sent back to it (``prompt``, ``max_age=0``,
OIDC_STEP_UP_ACR_VALUES) with OIDC_STEP_UP=idp; the answer must come from the same person, with an
``auth_time`` after the request.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import requests
from authlib.integrations.django_client import DjangoOAuth2App, OAuthError
from django.conf import settings
from django.contrib.auth import login
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from joserfc.errors import JoseError

from accounts import identity, stepup
from accounts.events import record_auth_event
from accounts.idp import IdPError, client, enabled, metadata, step_up_time, strength
from accounts.models import ExternalIdentity
from broker.errors import BrokerError
from broker.http import client_ip
from broker.models import Channel

log = logging.getLogger(__name__)

SIGN_IN, STEP_UP = "sign_in", "step_up"


def claims_options(issuer: str) -> dict:
    return {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": settings.OIDC_CLIENT_ID},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
    }


def groups_from(claims: dict) -> list[str] | None:
    """The managed groups the claims give (None: leave the person's groups as they are)."""
    name = settings.OIDC_GROUPS_CLAIM
    if not name:
        return None
    if name not in claims:
        if name in (claims.get("_claim_names") or {}):
            # Entra ID's "overage": too many groups for a token; they would need Microsoft Graph.
            log.warning(
                "the ID token refers to its %r claim elsewhere (too many groups): groups left as they are", name
            )
            return None
        return []  # providers leave the claim out when the person is in no group
    values = claims[name]
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        log.warning("the %r claim is not a list of strings: groups left as they are", name)
        return None
    targets = identity.connector_target_groups()
    return sorted({n for v in values if (n := identity.group_name_for(v, targets=targets))})


def missing_required_claims(claims: dict) -> list[str]:
    """OIDC_REQUIRED_CLAIMS this token does not satisfy (a list-valued claim needs to hold the value)."""
    missing = []
    for entry in settings.OIDC_REQUIRED_CLAIMS:
        claim, _, value = entry.partition("=")
        actual = claims.get(claim.strip())
        values = actual if isinstance(actual, list) else [actual]
        if value.strip() not in [str(v) for v in values if v is not None]:
            missing.append(entry)
    return missing


def _safe_next(request: HttpRequest, value: str | None) -> str:
    if value and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return settings.LOGIN_REDIRECT_URL


def _redirect_uri() -> str:
    # From SITE_URL, never from the Host header: this is the address registered at the provider.
    return settings.SITE_URL + reverse("oidc-callback")


# Refusals anyone can cause without going through the provider (a made-up or replayed callback) are
# logged, not audited one by one: strangers must not be able to grow the audit trail.
_NOT_AUDITED = {"state_mismatch"}


def _refuse(request: HttpRequest, exc: IdPError, *, username: str = "", user=None) -> HttpResponse:
    log.warning("SSO sign-in refused (%s) from %s: %s", exc.reason, client_ip(request), exc.detail)
    context = {"reason": exc.reason, "detail": exc.detail, "provider": settings.OIDC_PROVIDER_NAME}
    if exc.reason in _NOT_AUDITED:
        return render(request, "account/sso_refused.html", context, status=exc.status)
    record_auth_event(
        "auth.sso_refused",
        user=user,
        actor=user,
        username=username,
        via=Channel.OIDC,
        ip=client_ip(request),
        data={"reason": exc.reason, "detail": exc.detail[:500]},
    )
    return render(request, "account/sso_refused.html", context, status=exc.status)


@require_GET
@never_cache
def oidc_login(request: HttpRequest) -> HttpResponse:
    """Start a sign-in (or, with ``step_up=1`` for someone signed in, a fresh authentication) at the IdP."""
    if not enabled():
        raise Http404("single sign-on is not configured")
    purpose = STEP_UP if request.GET.get("step_up") == "1" and request.user.is_authenticated else SIGN_IN
    params = {}
    if purpose == STEP_UP:
        params["max_age"] = 0
        if settings.OIDC_STEP_UP_PROMPT:
            params["prompt"] = settings.OIDC_STEP_UP_PROMPT
        if settings.OIDC_STEP_UP_ACR_VALUES:
            params["acr_values"] = settings.OIDC_STEP_UP_ACR_VALUES
    app = client()
    try:
        metadata(app)
        rv = app.create_authorization_url(_redirect_uri(), **params)
    except IdPError as exc:
        return _refuse(request, exc)
    except (requests.RequestException, RuntimeError, ValueError) as exc:
        return _refuse(request, IdPError("idp_unreachable", f"the identity provider cannot be used: {exc}", 502))
    app.save_authorize_data(
        request,
        redirect_uri=_redirect_uri(),
        purpose=purpose,
        next=_safe_next(request, request.GET.get("next")),
        user_id=request.user.pk if purpose == STEP_UP else None,
        requested_at=time.time(),
        **rv,
    )
    return redirect(rv["url"])


def _verified_claims(request: HttpRequest, app: DjangoOAuth2App) -> tuple[dict, dict]:
    """Exchange the code and verify the ID token: (the claims, what this attempt stored). Raises IdPError."""
    state = request.GET.get("state") or ""
    data = app.framework.get_state_data(request.session, state) if state else None
    if not data:
        raise IdPError("state_mismatch", "this answer does not belong to a sign-in started in this browser")
    issuer = metadata(app)["issuer"]
    try:
        token = app.authorize_access_token(
            request, claims_options=claims_options(issuer), leeway=int(settings.OIDC_CLOCK_SKEW.total_seconds())
        )
    except OAuthError as exc:
        raise IdPError("idp_error", f"{exc.error}: {exc.description or ''}".strip(": ")) from None
    except JoseError as exc:
        raise IdPError("id_token_invalid", f"the ID token was refused: {exc.error}: {exc.description or ''}") from None
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise IdPError("idp_unreachable", f"the token exchange failed: {exc}", status=502) from None
    claims = token.get("userinfo")
    if not claims:
        raise IdPError("no_id_token", "the provider sent no ID token")
    claims = dict(claims)
    wanted = [settings.OIDC_USERNAME_CLAIM, settings.OIDC_EMAIL_CLAIM]
    if any(c and c not in claims for c in wanted) and metadata(app).get("userinfo_endpoint"):
        try:
            extra = dict(app.userinfo(token=token))
        except (requests.RequestException, ValueError, OAuthError) as exc:
            log.warning("userinfo could not be read: %s", exc)
            extra = {}
        if extra.get("sub") == claims.get("sub"):  # OpenID Connect Core 5.3.2: never another person's
            claims = {**extra, **claims}
    return claims, data


@require_GET
@never_cache
def oidc_callback(request: HttpRequest) -> HttpResponse:
    if not enabled():
        raise Http404("single sign-on is not configured")
    app = client()
    ip = client_ip(request)
    try:
        claims, data = _verified_claims(request, app)
    except IdPError as exc:
        return _refuse(request, exc)
    username = claims.get(settings.OIDC_USERNAME_CLAIM)
    subject = claims.get(settings.OIDC_SUBJECT_CLAIM)
    shown = username if isinstance(username, str) else ""
    if not isinstance(subject, str) or not subject:
        return _refuse(request, IdPError("no_subject", f"the ID token has no {settings.OIDC_SUBJECT_CLAIM!r} claim"))
    missing = missing_required_claims(claims)
    if missing:
        detail = f"the ID token does not satisfy {', '.join(missing)} (OIDC_REQUIRED_CLAIMS)"
        return _refuse(request, IdPError("required_claim", detail, status=403), username=shown)
    now = timezone.now()
    strong, auth_time = strength(claims)
    fresh = step_up_time(claims, now)
    issuer = metadata(app)["issuer"]

    if data.get("purpose") == STEP_UP:
        current = request.user
        linked = ExternalIdentity.objects.filter(user_id=data.get("user_id"), issuer=issuer, subject=subject)
        if not current.is_authenticated or current.pk != data.get("user_id") or not linked.exists():
            return _refuse(
                request, IdPError("step_up_other_person", "the provider answered for someone else"), username=shown
            )
        requested = datetime.fromtimestamp(data.get("requested_at") or 0, tz=UTC)
        if auth_time is None or auth_time < requested - settings.OIDC_CLOCK_SKEW:
            fresh = None  # the provider reused an earlier sign-in instead of authenticating again
        groups = groups_from(claims)
        if groups is not None:
            identity.memberships_set(user=current, names=groups, via=Channel.OIDC, ip=ip, actor=None)
        if fresh is None:
            return _refuse(
                request,
                IdPError(
                    "step_up_not_strong",
                    "the identity provider did not confirm a fresh sign-in with a strong method "
                    f"(amr {claims.get('amr')!r}, acr {claims.get('acr')!r}); verify with a one-time code instead",
                    status=403,
                ),
                user=current,
            )
        stepup.mark_verified_by_idp(request, at=fresh)
        record_auth_event(
            "auth.step_up", user=current, via=Channel.OIDC, ip=ip,
            data={"method": "oidc", "amr": claims.get("amr"), "acr": claims.get("acr"), "auth_time": fresh.isoformat()},
        )  # fmt: skip
        return redirect(data.get("next") or settings.LOGIN_REDIRECT_URL)

    profile = {
        "issuer": issuer,
        "subject": subject,
        "username": username,
        "email": claims.get(settings.OIDC_EMAIL_CLAIM) if settings.OIDC_EMAIL_CLAIM else None,
        "first_name": claims.get(settings.OIDC_FIRST_NAME_CLAIM) if settings.OIDC_FIRST_NAME_CLAIM else None,
        "last_name": claims.get(settings.OIDC_LAST_NAME_CLAIM) if settings.OIDC_LAST_NAME_CLAIM else None,
        "ip": ip,
        "now": now,
    }
    try:
        try:
            user, created = identity.identity_for_sign_in(**profile)
        except IntegrityError:
            # The same person's first sign-in in two tabs at once: the other one created the account.
            user, created = identity.identity_for_sign_in(**profile)
    except BrokerError as exc:
        status = 403 if exc.code in {"account_inactive", "username_taken", "not_provisioned"} else 400
        return _refuse(request, IdPError(exc.code, exc.detail, status=status), username=shown)
    groups = groups_from(claims)
    if groups is not None:
        identity.memberships_set(user=user, names=groups, via=Channel.OIDC, ip=ip, actor=None)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[stepup.IDP_SESSION_KEY] = True
    if fresh is not None:
        stepup.mark_verified_by_idp(request, at=fresh)
    record_auth_event(
        "auth.login",
        user=user,
        via=Channel.OIDC,
        ip=ip,
        data={
            "method": "oidc",
            "created": created,
            "amr": claims.get("amr"),
            "acr": claims.get("acr"),
            "auth_time": auth_time.isoformat() if auth_time else None,
            "strong": strong,
            "step_up": fresh is not None,
            "groups": groups,
        },
    )
    return redirect(data.get("next") or settings.LOGIN_REDIRECT_URL)
