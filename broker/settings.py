"""Settings for the privileged access broker.

Everything that differs between a laptop and production comes from the environment (see the
"Configuration" section of README.md). The defaults are the embedded development setup: SQLite
under ./var/ and a Celery broker on the filesystem, so that nothing but Python is needed.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from broker.env import (
    env_bool,
    env_database,
    env_duration,
    env_int,
    env_key,
    env_key_id,
    env_keys,
    env_list,
    env_networks,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("BROKER_VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        if len(key) < 32 and not DEBUG:
            raise ImproperlyConfigured("SECRET_KEY: must be at least 32 characters long")
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY: required when DEBUG is off (set SECRET_KEY or SECRET_KEY_FILE)")
    # Development only: a random key kept under var/ so that sessions survive a restart.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS: required when DEBUG is off (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
CSRF_FAILURE_VIEW = "broker.error_views.csrf_failure"  # JSON under /api/, Django's page elsewhere

# Base address used in links that leave the broker (approver emails).
SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000", schemes={"http", "https"}).rstrip("/")

INSTALLED_APPS = [
    # django.contrib.admin, with a site that requires a verified second factor (accounts/admin_site.py).
    "accounts.apps.BrokerAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_otp_webauthn",
    "broker",
    "accounts",
    "approvals",
    "grants",
    "notifications",
]

MIDDLEWARE = [
    # Outermost: the request id (X-Request-ID, taken or made) for every log line and task of the
    # request, echoed in the answer; and the HTTP metrics.
    "broker.telemetry.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Outermost but one, so that every response (errors too) carries the policy.
    "broker.portal.middleware.ContentSecurityPolicyMiddleware",
    # Serves collected static files in production (gunicorn), with far-future caching headers.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language of the page from the browser (Accept-Language); PreferenceMiddleware below
    # switches to the one saved on the signed-in person's account.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Sessions ended by a risk signal (a per-person epoch) are signed out at their next request.
    "accounts.sessions.SessionEpochMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # The portal: times in the viewer's time zone and pages in their language (the ones saved on
    # their account, read first).
    "accounts.preferences.PreferenceMiddleware",
    "broker.portal.middleware.TimeZoneMiddleware",
]

ROOT_URLCONF = "broker.urls"
WSGI_APPLICATION = "broker.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "broker.portal.context_processors.portal",
                "approvals.context_processors.inbox",
                "accounts.context_processors.identity",
            ],
            # The portal's template tags live with the rest of the portal plumbing.
            "libraries": {"portal": "broker.portal.templatetags"},
        },
    },
]

# SQLite in WAL mode with IMMEDIATE transactions: the web server and the worker write to the same
# file, and a transaction that takes the write lock at BEGIN cannot fail half-way with
# "database is locked" when it upgrades from reading to writing.
_SQLITE_DEFAULT = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": VAR_DIR / "broker.sqlite3",
    "OPTIONS": {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    },
}
DATABASES = {"default": env_database("DATABASE_URL", _SQLITE_DEFAULT)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Every string people read is translatable (make messages); English is the source, German is
# shipped in locale/ with its compiled .mo, so no gettext tools are needed to run the broker.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
# Development serves straight from the source folders; production from collectstatic's output.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# --- Sign-in and second factors ---------------------------------------------------------------------
# Failed sign-ins are counted per username and per client address (in the cache); past the limit,
# sign-in is refused for LOGIN_LOCKOUT without even checking the password.
LOGIN_MAX_FAILURES_PER_USER = env_int("LOGIN_MAX_FAILURES_PER_USER", 5, minimum=1, maximum=1000)
LOGIN_MAX_FAILURES_PER_IP = env_int("LOGIN_MAX_FAILURES_PER_IP", 30, minimum=1, maximum=100000)
LOGIN_LOCKOUT = env_duration("LOGIN_LOCKOUT", "15m")
# The counters live in the cache (CACHES below): shared by every web process when it is Redis.
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Access broker")
# django-otp throttles wrong codes per device with a delay doubling from 1 s (default 1 s, kept).
# Passkeys (django-otp-webauthn) as a second factor only: never as a password replacement here.
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False
OTP_WEBAUTHN_RP_NAME = env_str("OTP_WEBAUTHN_RP_NAME", "Access broker")
# Browsers accept passkeys only on https:// origins or http://localhost (never on an IP address):
# with an http SITE_URL, passkeys work when the portal is opened at http://localhost:PORT.
_SITE = urlsplit(SITE_URL)
if _SITE.scheme == "https":
    OTP_WEBAUTHN_RP_ID = _SITE.hostname
    OTP_WEBAUTHN_ALLOWED_ORIGINS = [SITE_URL]
else:
    OTP_WEBAUTHN_RP_ID = "localhost"
    OTP_WEBAUTHN_ALLOWED_ORIGINS = [f"http://localhost:{_SITE.port or 80}"]

# --- Enterprise identity: OpenID Connect sign-in, groups from the IdP, SCIM 2.0 ----------------------
# Sign-in through the company's OpenID Connect provider (accounts/oidc.py, Authlib): set OIDC_ISSUER
# (the provider's issuer URL; its /.well-known/openid-configuration is read on first use) and the
# client registered there. Empty OIDC_ISSUER: no SSO, local passwords only.
OIDC_ISSUER = env_url("OIDC_ISSUER", "", schemes={"https", "http"}).rstrip("/")
OIDC_CLIENT_ID = env_str("OIDC_CLIENT_ID").strip()
OIDC_CLIENT_SECRET = env_str("OIDC_CLIENT_SECRET").strip()  # or OIDC_CLIENT_SECRET_FILE; empty: public client (PKCE)
OIDC_SCOPES = env_str("OIDC_SCOPES", "openid email profile").replace(",", " ").split()  # spaces or commas
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "single sign-on").strip() or "single sign-on"
OIDC_SUBJECT_CLAIM = env_str("OIDC_SUBJECT_CLAIM", "sub").strip()
OIDC_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "preferred_username").strip()
OIDC_EMAIL_CLAIM = env_str("OIDC_EMAIL_CLAIM", "email").strip()
OIDC_FIRST_NAME_CLAIM = env_str("OIDC_FIRST_NAME_CLAIM", "given_name").strip()
OIDC_LAST_NAME_CLAIM = env_str("OIDC_LAST_NAME_CLAIM", "family_name").strip()
OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM", "groups").strip()  # empty: groups never come from sign-in
# Claims every ID token must carry with these values ("claim=value", comma-separated), e.g. Google's
# hd=example.com or Entra's tid=<tenant id>: otherwise anyone with an account at the provider gets in.
OIDC_REQUIRED_CLAIMS = env_list("OIDC_REQUIRED_CLAIMS")
# Off: only people SCIM provisioned (or who signed in before) may sign in; nobody else gets an account.
OIDC_CREATE_USERS = env_bool("OIDC_CREATE_USERS", True)
# Step-up from the IdP: a sign-in whose auth_time is within MFA_STEP_UP_WINDOW and whose amr holds one
# of OIDC_STRONG_AMR (or whose acr is one of OIDC_STRONG_ACR) counts as the broker's step-up.
OIDC_STRONG_AMR = env_list("OIDC_STRONG_AMR", ["mfa", "hwk"])
OIDC_STRONG_ACR = env_list("OIDC_STRONG_ACR", ["phr", "phrh"])
# When a fresh second factor is needed: "idp" sends people who signed in through the IdP back to it
# (prompt, max_age=0, acr_values); "local" asks for the broker's own second factor, as for everyone.
OIDC_STEP_UP = env_str("OIDC_STEP_UP", "idp").strip().lower()
if OIDC_STEP_UP not in {"idp", "local"}:
    raise ImproperlyConfigured(f"OIDC_STEP_UP: expected idp or local, got {OIDC_STEP_UP!r}")
OIDC_STEP_UP_PROMPT = env_str("OIDC_STEP_UP_PROMPT", "login").strip()  # empty for providers without prompt=login
OIDC_STEP_UP_ACR_VALUES = " ".join(env_str("OIDC_STEP_UP_ACR_VALUES").replace(",", " ").split())
OIDC_TIMEOUT = env_duration("OIDC_TIMEOUT", "10s")
OIDC_CLOCK_SKEW = env_duration("OIDC_CLOCK_SKEW", "60s")
# API calls with the provider's own tokens (JWTs signed with its keys) instead of a personal broker
# token: the audience they must carry (the API's identifier at the provider, or OIDC_CLIENT_ID to
# accept ID tokens). Empty: only broker tokens. A person's token holds OIDC_API_SCOPES; a workload's
# (client credentials) token acts as a broker service account: "client-id=username[:scope+scope]".
OIDC_API_AUDIENCE = env_str("OIDC_API_AUDIENCE").strip()
OIDC_API_SCOPES = env_list("OIDC_API_SCOPES", ["read", "request"])
OIDC_API_CLIENTS = env_list("OIDC_API_CLIENTS")
# The groups the identity provider decides (by sign-in claims and by SCIM): those whose names start
# with IDP_MANAGED_GROUP_PREFIX, and those listed in IDP_MANAGED_GROUPS ("name", or "idp-value=name"
# to map a value such as an Entra group object id onto a group name). The broker never touches other
# groups, and never a django_group connector's target group.
IDP_MANAGED_GROUP_PREFIX = env_str("IDP_MANAGED_GROUP_PREFIX").strip()
IDP_MANAGED_GROUPS = env_list("IDP_MANAGED_GROUPS")
# Local passwords (the portal's sign-in form, password reset). Off: people sign in through the IdP
# only; the break-glass path stays: superusers sign in at /admin/login/ with password and one-time code.
LOCAL_LOGIN = env_bool("LOCAL_LOGIN", True)
# SCIM 2.0 provisioning at /scim/v2/ (accounts/scim/): the bearer token the IdP sends (SCIM_TOKEN or
# SCIM_TOKEN_FILE, at least 32 characters). Empty: SCIM is off (404).
SCIM_TOKEN = env_str("SCIM_TOKEN").strip()


def _check_identity_settings() -> None:
    from urllib.parse import urlsplit as _split

    if OIDC_ISSUER:
        if not OIDC_CLIENT_ID:
            raise ImproperlyConfigured("OIDC_CLIENT_ID: required when OIDC_ISSUER is set")
        host = _split(OIDC_ISSUER).hostname or ""
        if _split(OIDC_ISSUER).scheme != "https" and not DEBUG and host not in {"localhost", "127.0.0.1", "::1"}:
            raise ImproperlyConfigured("OIDC_ISSUER: must be an https:// URL (http only on localhost or with DEBUG)")
        if "openid" not in OIDC_SCOPES:
            raise ImproperlyConfigured(f"OIDC_SCOPES: must include openid, got {' '.join(OIDC_SCOPES)!r}")
        for name in ("OIDC_SUBJECT_CLAIM", "OIDC_USERNAME_CLAIM"):
            if not globals()[name]:
                raise ImproperlyConfigured(f"{name}: must name a claim")
    for entry in OIDC_REQUIRED_CLAIMS:
        claim, sep, value = entry.partition("=")
        if not sep or not claim.strip() or not value.strip():
            raise ImproperlyConfigured(f"OIDC_REQUIRED_CLAIMS: {entry!r} is not 'claim=value'")
    if not LOCAL_LOGIN and not OIDC_ISSUER:
        raise ImproperlyConfigured("LOCAL_LOGIN: off needs OIDC_ISSUER (otherwise nobody could sign in)")
    for entry in IDP_MANAGED_GROUPS:
        value, _, name = entry.rpartition("=") if "=" in entry else ("", "", entry)
        if not name.strip() or ("=" in entry and not value.strip()):
            raise ImproperlyConfigured(f"IDP_MANAGED_GROUPS: {entry!r} is neither 'name' nor 'idp-value=name'")
    if OIDC_API_AUDIENCE and not OIDC_ISSUER:
        raise ImproperlyConfigured("OIDC_API_AUDIENCE: needs OIDC_ISSUER (the provider whose tokens the API accepts)")
    scopes = {"read", "request", "approve", "admin"}
    for name in OIDC_API_SCOPES:
        if name not in scopes:
            raise ImproperlyConfigured(f"OIDC_API_SCOPES: unknown scope {name!r}; use read, request, approve, admin")
    for entry in OIDC_API_CLIENTS:
        client_id, sep, rest = entry.partition("=")
        username, _, wanted = rest.partition(":")
        if (
            not sep
            or not client_id.strip()
            or not username.strip()
            or not set(filter(None, wanted.split("+"))) <= scopes
        ):
            raise ImproperlyConfigured(f"OIDC_API_CLIENTS: {entry!r} is not 'client-id=username[:read+request+...]'")
    if SCIM_TOKEN and len(SCIM_TOKEN) < 32:
        raise ImproperlyConfigured("SCIM_TOKEN: must be at least 32 characters long (e.g. openssl rand -hex 32)")


_check_identity_settings()

# --- Security headers and cookies ----------------------------------------------------------------
_HTTPS = env_bool("HTTPS", not DEBUG)
SESSION_COOKIE_SECURE = _HTTPS
CSRF_COOKIE_SECURE = _HTTPS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600, minimum=60)
# A browser session ends with the browser; SESSION_COOKIE_AGE caps it otherwise.
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Everything from our own origin, nothing inline (the portal has no inline script or style);
# data: images for the QR code of MFA enrolment.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Usually the reverse proxy redirects to HTTPS; set this when the broker faces clients itself.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Number of reverse proxies in front of the broker whose X-Forwarded-For may be trusted for the
# client address written to the audit trail (0: use the socket address).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=10)

# --- Email ----------------------------------------------------------------------------------------
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL: set at most one of them")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20, minimum=1)
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Access broker <broker@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Celery ---------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL", "filesystem://localhost/", schemes={"redis", "rediss", "filesystem", "memory"}
)
if CELERY_BROKER_URL.startswith("filesystem"):
    # Embedded development broker: messages are files under var/celery. One folder serves as both
    # inbox and outbox, so the web server and the worker see the same queue.
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    _control_dir = VAR_DIR / "celery" / "control"
    for _d in (_queue_dir, _processed_dir, _control_dir):
        _d.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "control_folder": str(_control_dir),
        "store_processed": False,
        "polling_interval": 0.2,
    }
else:
    # Redis hands an unacknowledged message to another worker after visibility_timeout; ETA tasks
    # are only enqueued for grants that expire well within it (REVOKE_ETA_HORIZON).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "broker")
# Messages to people have a queue of their own, so that a burst of "grant ended" emails never
# delays a removal. A worker started without -Q takes both queues (make run, small setups); in
# production run one worker with `-Q broker` for activations and removals and one with
# `-Q notifications` (see the README).
CELERY_NOTIFICATIONS_QUEUE = env_str("CELERY_NOTIFICATIONS_QUEUE", "notifications")
CELERY_TASK_QUEUES = {CELERY_TASK_DEFAULT_QUEUE: {}, CELERY_NOTIFICATIONS_QUEUE: {}}
CELERY_TASK_ROUTES = {"notifications.tasks.*": {"queue": CELERY_NOTIFICATIONS_QUEUE}}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A prefork child whose resident memory passed this (KiB) is replaced once its task ends: Python
# seldom gives memory back, so one large task (reconciling a target with 100,000 holders) would
# otherwise keep a child large for good.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("WORKER_MAX_MEMORY_PER_CHILD", 256_000, minimum=50_000)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- The broker's own knobs -----------------------------------------------------------------------
# How often the sweepers activate due grants, revoke overdue ones and expire stale requests.
SWEEP_INTERVAL = env_duration("SWEEP_INTERVAL", "10s")
# Grants expiring within this horizon get a revoke task with an ETA at once; later ones are queued
# by the sweeper when they come within it (must stay well under the Redis visibility_timeout).
REVOKE_ETA_HORIZON = env_duration("REVOKE_ETA_HORIZON", "10m")
# Removal attempts (with exponential backoff from REVOKE_RETRY_BASE, capped at REVOKE_RETRY_MAX)
# before a grant becomes revoke_failed; revoke_failed grants are retried every REVOKE_FAILED_RETRY.
# Grants ended in one transaction when many are due at once (a burst): one call per target and
# one audit append for the whole batch. 1 ends every grant in a transaction of its own.
REVOKE_BATCH_SIZE = env_int("REVOKE_BATCH_SIZE", 200, minimum=1, maximum=5000)
REVOKE_MAX_ATTEMPTS = env_int("REVOKE_MAX_ATTEMPTS", 8, minimum=1, maximum=100)
REVOKE_RETRY_BASE = env_duration("REVOKE_RETRY_BASE", "2s")
REVOKE_RETRY_MAX = env_duration("REVOKE_RETRY_MAX", "10m")
REVOKE_FAILED_RETRY = env_duration("REVOKE_FAILED_RETRY", "1d")
ACTIVATE_MAX_ATTEMPTS = env_int("ACTIVATE_MAX_ATTEMPTS", 5, minimum=1, maximum=100)
# Connectors a deployment adds (dotted paths of Connector subclasses), besides the built-in ones
# and those of installed packages' `access_broker.connectors` entry points.
BROKER_CONNECTORS = env_list("BROKER_CONNECTORS")
# After a call to a target times out or its connection is refused, further calls to that target
# fail at once for this long (counted as failed attempts), so that it cannot stall the others.
CONNECTOR_COOLDOWN = env_duration("CONNECTOR_COOLDOWN", "30s")
# How long a second-factor verification counts for sensitive steps (step-up).
MFA_STEP_UP_WINDOW = env_duration("MFA_STEP_UP_WINDOW", "5m")
# Who needs an enrolment code, issued by an administrator, to set up their first second factor:
# "approvers" (people named in any approval stage, and staff), "all", or "off" (the password alone,
# re-entered, lets a signed-in person enrol).
MFA_ENROLMENT_CODE_REQUIRED = env_str("MFA_ENROLMENT_CODE_REQUIRED", "off").strip().lower()
if MFA_ENROLMENT_CODE_REQUIRED not in {"approvers", "all", "off"}:
    raise ImproperlyConfigured(
        f"MFA_ENROLMENT_CODE_REQUIRED: expected approvers, all or off, got {MFA_ENROLMENT_CODE_REQUIRED!r}"
    )
MFA_ENROLMENT_CODE_LIFETIME = env_duration("MFA_ENROLMENT_CODE_LIFETIME", "3d")
# Notifications: requesters are warned this long before a grant expires (only for grants longer
# than twice this lead); the scan for due reminders and warnings runs every NOTIFY_SCAN_INTERVAL.
NOTIFY_EXPIRY_LEAD = env_duration("NOTIFY_EXPIRY_LEAD", "15m")
NOTIFY_SCAN_INTERVAL = env_duration("NOTIFY_SCAN_INTERVAL", "30s")
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 5, minimum=1, maximum=50)
# Approver email links whose signature does not verify (made up, cut short, altered), per client
# address within the window: refused without an audit event each; past the limit 429 with
# Retry-After and one summary event per address and window.
EMAIL_LINK_FAILURE_LIMIT = env_int("EMAIL_LINK_FAILURE_LIMIT", 20, minimum=1)
EMAIL_LINK_FAILURE_WINDOW = env_duration("EMAIL_LINK_FAILURE_WINDOW", "15m")
# How far ahead a request may schedule its start.
REQUEST_MAX_SCHEDULE_AHEAD = env_duration("REQUEST_MAX_SCHEDULE_AHEAD", "30d")
# Role conditions (docs/policy.md, "Conditions"). The device posture signal: the name of the header
# a trusted proxy or device-trust agent sets, believed only when the request's immediate peer is in
# DEVICE_POSTURE_TRUSTED_PROXIES (from anywhere else the header is ignored). How long a risk signal
# counts towards a person's risk level (``max_risk``).
DEVICE_POSTURE_HEADER = env_str("DEVICE_POSTURE_HEADER", "").strip()
DEVICE_POSTURE_TRUSTED_PROXIES = env_networks("DEVICE_POSTURE_TRUSTED_PROXIES")
RISK_LEVEL_MEMORY = env_duration("RISK_LEVEL_MEMORY", "7d")
# Escalation: the group whose members decide stages that waited too long (role.escalation_delay),
# for roles whose policy names no escalation approvers of their own. Empty: only those roles escalate.
ESCALATION_GROUP = env_str("ESCALATION_GROUP", "").strip()
# Anomaly flags (approvals/anomaly.py): each new request is scored against the requester's own
# history and their peers' over ANOMALY_LOOKBACK; a flagged request needs a fresh second factor.
ANOMALY_SCORING = env_bool("ANOMALY_SCORING", True)
# Reason codes that never flag (first_for_role, unusual_hour, burst, long_duration, new_network).
ANOMALY_IGNORE = env_list("ANOMALY_IGNORE")
ANOMALY_LOOKBACK = env_duration("ANOMALY_LOOKBACK", "90d")
# At most this many earlier requests are read per question (the newest), so scoring stays cheap.
ANOMALY_HISTORY_LIMIT = env_int("ANOMALY_HISTORY_LIMIT", 200, minimum=10, maximum=5000)
# The unusual hour and the duration norm need at least this many earlier requests to compare with.
ANOMALY_MIN_HISTORY = env_int("ANOMALY_MIN_HISTORY", 5, minimum=1, maximum=1000)
# This many requests (the new one included) within ANOMALY_BURST_WINDOW is a burst.
ANOMALY_BURST_COUNT = env_int("ANOMALY_BURST_COUNT", 5, minimum=2, maximum=1000)
ANOMALY_BURST_WINDOW = env_duration("ANOMALY_BURST_WINDOW", "10m")
# A duration more than this many times the usual one (the median) is far above the norm.
ANOMALY_DURATION_FACTOR = env_int("ANOMALY_DURATION_FACTOR", 3, minimum=2, maximum=100)
# Right-sizing: an eligibility nobody used (no request for the role by that user, or by any member of
# that group) for this long is listed as unused, for roles whose policy sets no review.unused_after.
UNUSED_ELIGIBILITY_AFTER = env_duration("UNUSED_ELIGIBILITY_AFTER", "90d")

if REVOKE_ETA_HORIZON.total_seconds() >= 3000:
    raise ImproperlyConfigured(
        "REVOKE_ETA_HORIZON: must stay well under the broker visibility timeout (1h); use at most 50m"
    )

# How often targets are compared with the grants (drift detection; removal on authoritative targets).
RECONCILE_INTERVAL = env_duration("RECONCILE_INTERVAL", "5m")

# --- The audit trail -------------------------------------------------------------------------------
# Every event carries an HMAC-SHA256 under AUDIT_KEY, a key that is not in the database, and the id
# of that key (AUDIT_KEY_ID). Older keys stay in AUDIT_OLD_KEYS so that events written before a
# rotation still verify. See "The audit trail" in docs/architecture.md.
AUDIT_KEY_MIN_LENGTH = 32


def _audit_key() -> str:
    key = env_key("AUDIT_KEY", min_length=AUDIT_KEY_MIN_LENGTH)
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "AUDIT_KEY: required when DEBUG is off (set AUDIT_KEY or AUDIT_KEY_FILE to a random string of at "
            "least 32 characters, kept outside the database, e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(48))')"
        )
    # Development only: a random key kept under var/, like dev-secret-key.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / "dev-audit-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


AUDIT_KEY = _audit_key()
AUDIT_KEY_ID = env_key_id("AUDIT_KEY_ID", "1")
AUDIT_OLD_KEYS = env_keys("AUDIT_OLD_KEYS", min_length=AUDIT_KEY_MIN_LENGTH)
if AUDIT_KEY_ID in AUDIT_OLD_KEYS:
    raise ImproperlyConfigured(
        f"AUDIT_OLD_KEYS: key id {AUDIT_KEY_ID!r} is also AUDIT_KEY_ID; give the new key a new id "
        "(ids are never reused: each event names the key it was written with)"
    )
# How often the worker walks the whole audit chain (the security group hears of a break, once).
AUDIT_VERIFY_INTERVAL = env_duration("AUDIT_VERIFY_INTERVAL", "1h")
# How often a signed checkpoint of the chain's head is written outside the database.
AUDIT_CHECKPOINT_INTERVAL = env_duration("AUDIT_CHECKPOINT_INTERVAL", "5m")
if AUDIT_CHECKPOINT_INTERVAL.total_seconds() < 1:
    raise ImproperlyConfigured("AUDIT_CHECKPOINT_INTERVAL: must be at least 1s")
AUDIT_CHECKPOINT_FILE = env_str("AUDIT_CHECKPOINT_FILE", str(VAR_DIR / "audit-checkpoints.jsonl") if DEBUG else "")
AUDIT_CHECKPOINT_SYSLOG = env_str("AUDIT_CHECKPOINT_SYSLOG").strip()
if AUDIT_CHECKPOINT_SYSLOG and not AUDIT_CHECKPOINT_SYSLOG.startswith("/"):
    _syslog = urlsplit(AUDIT_CHECKPOINT_SYSLOG)
    try:
        _syslog_port = _syslog.port
    except ValueError:
        _syslog_port = None
    if _syslog.scheme != "udp" or not _syslog.hostname or not _syslog_port:
        raise ImproperlyConfigured(
            "AUDIT_CHECKPOINT_SYSLOG: expected the path of a local syslog socket (/dev/log) or udp://host:port"
        )
AUDIT_CHECKPOINT_WEBHOOK_URL = env_url("AUDIT_CHECKPOINT_WEBHOOK_URL", "", schemes={"http", "https"})
AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT = env_duration("AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT", "5s")
if not 0 < AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT.total_seconds() <= 60:
    raise ImproperlyConfigured("AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT: must be more than 0s and at most 1m")

CELERY_BEAT_SCHEDULE = {
    "sweep": {"task": "grants.tasks.sweep", "schedule": SWEEP_INTERVAL.total_seconds()},
    "expire-requests": {"task": "approvals.tasks.expire_requests", "schedule": SWEEP_INTERVAL.total_seconds()},
    "sweep-eligibility": {"task": "approvals.tasks.sweep_eligibility", "schedule": SWEEP_INTERVAL.total_seconds()},
    # Right-sizing: only roles whose policy sets review.remove_unused lose anything.
    "remove-unused-eligibility": {"task": "approvals.tasks.remove_unused", "schedule": 3600.0},
    # Recertification: reviews open, are reminded, escalated and expire within the hour.
    "recertify": {"task": "approvals.tasks.recertify", "schedule": 3600.0},
    "reconcile": {"task": "grants.tasks.reconcile", "schedule": RECONCILE_INTERVAL.total_seconds()},
    "notify-scan": {"task": "notifications.tasks.scan", "schedule": NOTIFY_SCAN_INTERVAL.total_seconds()},
    "escalate-requests": {
        "task": "approvals.tasks.escalate_requests",
        "schedule": NOTIFY_SCAN_INTERVAL.total_seconds(),
    },
    "audit-verify": {"task": "broker.tasks.verify_audit", "schedule": AUDIT_VERIFY_INTERVAL.total_seconds()},
    "audit-checkpoint": {
        "task": "broker.tasks.audit_checkpoint",
        "schedule": AUDIT_CHECKPOINT_INTERVAL.total_seconds(),
    },
}

# --- Operations: health, metrics, logs, chat --------------------------------------------------------
# Beat queues a heartbeat task every HEARTBEAT_INTERVAL; the worker that runs it writes the time
# to the database. /readyz and the metrics call the worker down when the newest one is older than
# HEARTBEAT_MAX_AGE (beat or every worker stopped, or the queue so backed up that it waits).
HEARTBEAT_INTERVAL = env_duration("HEARTBEAT_INTERVAL", "15s")
HEARTBEAT_MAX_AGE = env_duration("HEARTBEAT_MAX_AGE", "1m")
if HEARTBEAT_MAX_AGE <= HEARTBEAT_INTERVAL:
    raise ImproperlyConfigured("HEARTBEAT_MAX_AGE: must be longer than HEARTBEAT_INTERVAL")
# /metrics answers a bearer token (METRICS_TOKEN or METRICS_TOKEN_FILE) and/or client addresses in
# METRICS_ALLOWED_IPS (addresses or networks, the client address as broker.http.client_ip finds
# it); both set: both are required. Neither set: loopback only in DEBUG, nobody otherwise.
METRICS_TOKEN = env_key("METRICS_TOKEN", min_length=16)
METRICS_ALLOWED_IPS = env_networks("METRICS_ALLOWED_IPS")
# prometheus-client's multiprocess mode: every web process and worker on a host writes its
# counters to files in this folder and /metrics adds them up (see docs/operations.md).
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics") if DEBUG else "")
# Chat: a Slack-compatible and a Microsoft Teams-compatible incoming webhook for every message of
# interest (a role may name more in its policy, by environment variable or file: docs/policy.md).
# The URLs are secrets (whoever has one can post): from the environment or *_FILE, never the policy.
SLACK_WEBHOOK_URL = env_url("SLACK_WEBHOOK_URL", "", schemes={"https", "http"})
TEAMS_WEBHOOK_URL = env_url("TEAMS_WEBHOOK_URL", "", schemes={"https", "http"})
CHAT_WEBHOOK_TIMEOUT = env_duration("CHAT_WEBHOOK_TIMEOUT", "5s")
if not 0 < CHAT_WEBHOOK_TIMEOUT.total_seconds() <= 30:
    raise ImproperlyConfigured("CHAT_WEBHOOK_TIMEOUT: must be more than 0s and at most 30s")
# Where audit_archive writes archives by default (and audit_verify --archive reads them).
AUDIT_ARCHIVE_DIR = env_str("AUDIT_ARCHIVE_DIR", str(VAR_DIR / "audit-archive") if DEBUG else "")
CELERY_BEAT_SCHEDULE["worker-heartbeat"] = {
    "task": "broker.tasks.heartbeat",
    "schedule": HEARTBEAT_INTERVAL.total_seconds(),
    # Heartbeats that waited longer than this are stale: a restarted worker drops them.
    "options": {"expires": HEARTBEAT_MAX_AGE.total_seconds()},
}

# --- Cache (rate limits of the API) --------------------------------------------------------------
# Counters of failed authentications and one-time codes must be shared by every web process, so
# production uses Redis: CACHE_URL, or by default the Celery broker's Redis. Without Redis (the
# embedded setup, one web process) a per-process memory cache is enough.
CACHE_URL = env_url(
    "CACHE_URL",
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "locmem://",
    schemes={"redis", "rediss", "locmem"},
)
if CACHE_URL.startswith("redis"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "broker-cache",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "broker"}}

# --- REST framework -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Bearer first: a request that carries a token is judged by the token alone, never by a cookie.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        # The portal's session, with DRF's CSRF check on unsafe methods (never exempt).
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated", "accounts.authentication.HasScope"],
    # JSON only: no browsable (HTML) API, no form parsing.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["broker.api.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "broker.api.parsers.JSONOnly",
    # OPTIONS answers 405 like any other method the API does not offer.
    "DEFAULT_METADATA_CLASS": None,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "broker.api.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "broker.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "broker.api.errors.exception_handler",
    # `format` is the audit export's own parameter, not DRF's renderer override.
    "URL_FORMAT_OVERRIDE": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# Failed bearer tokens per client address, and wrong one-time codes per user, within the window;
# past the limit the API answers 429 with Retry-After.
API_RATE_WINDOW = env_duration("API_RATE_WINDOW", "15m")
API_AUTH_FAILURE_LIMIT = env_int("API_AUTH_FAILURE_LIMIT", 30, minimum=1)
API_OTP_FAILURE_LIMIT = env_int("API_OTP_FAILURE_LIMIT", 10, minimum=1)

SPECTACULAR_SETTINGS = {
    "TITLE": "Privileged access broker API",
    "DESCRIPTION": (
        "Just-in-time privileged access: request a role, approve, hold a time-boxed grant, check, audit, and "
        "manage the policy as code. Authenticate with `Authorization: Bearer <token>` (a personal API token; each "
        "operation names the scope it needs) or the portal's session cookie (with its CSRF token in `X-CSRFToken` "
        "on POST and DELETE). Users are named by username and roles by slug. Errors are JSON: `{error, detail}`, "
        "plus `fields` for 400; each operation lists the `error` codes it can answer (`x-error-codes`). Lists are "
        'newest first and paged: follow `next` as it is. The contract is docs/design.md ("REST API v1").'
    ),
    "VERSION": "1.0.0",
    "LICENSE": {"name": "Proprietary"},
    # Relative: the broker that serves this schema (generated clients take their base URL as an argument).
    "SERVERS": [{"url": "/", "description": "The broker serving this schema, e.g. https://access.example.com"}],
    "TAGS": [
        {"name": "roles", "description": "The roles you may ask for."},
        {"name": "requests", "description": "Asking for a role, and deciding as an approver."},
        {"name": "grants", "description": "Time-boxed grants: follow, give back, extend, revoke, review break-glass."},
        {"name": "check", "description": "Does someone hold a role right now? For systems that pull decisions."},
        {"name": "tokens", "description": "Your personal API tokens."},
        {"name": "audit", "description": "The hash-chained audit trail: pages and exports (auditors, administrators)."},
        {"name": "signals", "description": "Risk signals about a user (administrators)."},
        {"name": "reconciliation", "description": "Drift between the targets and the grants, per target."},
        {"name": "eligibility", "description": "Right-sizing: eligibilities nobody used (auditors, administrators)."},
        {"name": "policy", "description": "Policy as code: plan and apply the roles-and-eligibility YAML file."},
    ],
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {
        "RequestStatusEnum": "approvals.models.AccessRequest.Status",
        "GrantStatusEnum": "grants.models.Grant.Status",
        "ScopeEnum": "accounts.tokens.ALL_SCOPES",
        "ChannelEnum": "broker.models.Channel",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "broker.api.schema.postprocess_schema",
    ],
    # The docs page works offline: Swagger UI's files come from drf-spectacular-sidecar, no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Logging --------------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL: expected DEBUG, INFO, WARNING or ERROR, got {LOG_LEVEL!r}")
# LOG_FORMAT=json: one JSON object per line on stdout (time, level, logger, message, the request id
# and the task, the grant and request ids of lifecycle lines), for a log pipeline. The default
# stays readable text for `make run`. Both go through the same filters: the request id, and the
# redaction of anything shaped like a token (broker/telemetry/logs.py).
LOG_FORMAT = env_str("LOG_FORMAT", "text").strip().lower()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT: expected text or json, got {LOG_FORMAT!r}")
# A management command's stdout is its answer (TOKEN=$(manage.py create_api_token alice)): its log
# lines go to stderr whatever the format. The servers (gunicorn, celery, runserver) log to stdout.
_COMMAND = Path(sys.argv[0]).name == "manage.py" and sys.argv[1:2] != ["runserver"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "broker.telemetry.logs.ContextFilter"}},
    "formatters": {
        "text": {"()": "broker.telemetry.logs.TextFormatter"},
        "json": {"()": "broker.telemetry.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
            "stream": "ext://sys.stdout" if LOG_FORMAT == "json" and not _COMMAND else "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "broker": {"level": LOG_LEVEL},
        "accounts": {"level": LOG_LEVEL},
        "approvals": {"level": LOG_LEVEL},
        "grants": {"level": LOG_LEVEL},
        "notifications": {"level": LOG_LEVEL},
        "celery": {"level": "INFO"},
    },
}
