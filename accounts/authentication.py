"""Who is calling the API and with which powers: bearer tokens, the session, scopes.

A bearer token is looked up with one indexed query (``accounts.tokens.token_authenticate``: a keyed
hash, no password hashing). With OIDC_API_AUDIENCE set, a JWT the company's identity provider signed
is accepted too (``IdPToken``): verified against the provider's keys, issuer and audience; a person's
token is mapped by its subject to their linked account (OIDC_API_SCOPES), a workload's client
credentials token to the service account OIDC_API_CLIENTS names (with its scopes). Its scopes only ever narrow what its user may do: every permission is
still checked against the user, and staff powers need the ``admin`` scope on top of ``is_staff``.
The browser session counts as holding every scope of its user, and DRF enforces CSRF on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from accounts import idp, ratelimit
from accounts.models import ApiToken, ExternalIdentity
from accounts.tokens import TOKEN_PREFIX, token_authenticate
from broker.http import client_ip

# last_used_at is written at most this often per token: a conditional UPDATE, not one per request.
LAST_USED_GRANULARITY = timedelta(minutes=1)
ANY_SCOPE = "any"


@dataclass(frozen=True)
class IdPToken:
    """A verified token from the identity provider: who it acts as, its scopes, when it ends, and the
    step-up it stands for (a person's fresh, strong authentication there; see accounts/idp.py)."""

    user: object
    scopes: tuple[str, ...]
    expires_at: datetime | None
    subject: str
    client: str
    mfa_at: datetime | None


def _looks_like_jwt(text: str) -> bool:
    return text.count(".") == 2 and not text.startswith(TOKEN_PREFIX) and len(text) <= 16384


def idp_token_authenticate(text: str) -> IdPToken | None:
    """The account and scopes an IdP-signed JWT stands for, or None (refused, unknown or inactive)."""
    from django.contrib.auth import get_user_model

    try:
        claims = idp.verify_bearer_jwt(text)
    except idp.IdPError:
        return None
    subject = str(claims.get(settings.OIDC_SUBJECT_CLAIM) or claims.get("sub"))
    client = next((str(claims[c]) for c in ("client_id", "azp", "appid") if isinstance(claims.get(c), str)), "")
    exp = claims.get("exp")
    expires_at = datetime.fromtimestamp(exp, tz=UTC) if isinstance(exp, int | float) else None
    issuer = idp.metadata(idp.client())["issuer"]
    person = ExternalIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    if person is not None:
        user, scopes, mfa_at = person.user, tuple(settings.OIDC_API_SCOPES), idp.step_up_time(claims)
    else:
        workloads = {}
        for entry in settings.OIDC_API_CLIENTS:
            client_id, _, rest = entry.partition("=")
            username, _, wanted = rest.partition(":")
            workloads[client_id.strip()] = (username.strip(), tuple(filter(None, wanted.split("+"))) or ("read",))
        if client not in workloads:
            return None
        username, scopes = workloads[client]
        user = get_user_model().objects.filter(username=username).first()
        mfa_at = None  # a workload proves no second factor
        if user is None:
            return None
    if not user.is_active:
        return None
    if "admin" in scopes and not user.is_staff:
        scopes = tuple(s for s in scopes if s != "admin")
    return IdPToken(user=user, scopes=scopes, expires_at=expires_at, subject=subject, client=client, mfa_at=mfa_at)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer pab_...``; failures are counted per client address (429 past the limit)."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.encode():
            return None  # not ours: the session may still authenticate the request
        if len(header) != 2:
            self._fail(request, "the Authorization header must be `Bearer <token>`")
        try:
            text = header[1].decode("ascii")
        except UnicodeDecodeError:
            self._fail(request, "the token contains characters that no token has")
        if settings.OIDC_API_AUDIENCE and _looks_like_jwt(text):
            credential = idp_token_authenticate(text)
            if credential is None:
                self._fail(request, "the identity provider's token was refused, or maps to no active account")
            return credential.user, credential
        token = token_authenticate(text)
        if token is None:
            self._fail(request, "the token is unknown, expired or revoked")
        self._touch(token)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'

    def _fail(self, request, detail: str):
        wait = ratelimit.fail(
            "auth",
            client_ip(request) or "unknown",
            limit=settings.API_AUTH_FAILURE_LIMIT,
            window=settings.API_RATE_WINDOW.total_seconds(),
        )
        if wait is not None:
            raise exceptions.Throttled(wait=wait, detail="too many failed authentications from your address")
        raise exceptions.AuthenticationFailed(detail, code="invalid_token")

    @staticmethod
    def _touch(token: ApiToken) -> None:
        token.last_used_at = touch(token.pk, token.last_used_at)


def touch(token_id: int, last_used_at, now=None):
    """Record a token's use, at most once a minute; return its last_used_at after that."""
    now = now or timezone.now()
    if last_used_at is not None and last_used_at > now - LAST_USED_GRANULARITY:
        return last_used_at
    # Conditional: of several concurrent requests only one writes, and never backwards.
    ApiToken.objects.filter(pk=token_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_GRANULARITY)
    ).update(last_used_at=now)
    return now


def token_of(request) -> ApiToken | IdPToken | None:
    """The bearer credential of the request (a broker token or the provider's), None for a session."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiToken | IdPToken) else None


def has_scope(request, scope: str) -> bool:
    """The session holds every scope of its user; a token holds those it was given."""
    if scope == ANY_SCOPE:
        return True
    token = token_of(request)
    return token is None or scope in token.scopes


def acts_as_admin(request) -> bool:
    """Staff powers (see and revoke everything, signals): a staff user, and the admin scope on a token."""
    user = request.user
    return bool(user and user.is_authenticated and user.is_staff and has_scope(request, "admin"))


def required_scope(request, view) -> str | None:
    """The scope a view declares for this action (``required_scopes``, by action or method)."""
    scopes = getattr(view, "required_scopes", None) or {}
    action = getattr(view, "action", None)
    if action and action in scopes:
        return scopes[action]
    method = "GET" if request.method == "HEAD" else request.method
    return scopes.get(method)


class HasScope(permissions.BasePermission):
    """Fails closed: a view that declares no scope for an action refuses token callers."""

    def has_permission(self, request, view) -> bool:
        if request.method == "OPTIONS" or not hasattr(view, request.method.lower()):
            return True  # the method is not offered: let the view answer 405
        scope = required_scope(request, view)
        if scope is None:
            if token_of(request) is None:
                return True
            raise exceptions.PermissionDenied(
                "this operation is not available to API tokens", code="insufficient_scope"
            )
        if not has_scope(request, scope):
            raise exceptions.PermissionDenied(f"the token lacks the `{scope}` scope", code="insufficient_scope")
        return True
