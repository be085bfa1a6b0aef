"""Settings for the test suite: the real settings, with a throwaway secret and fast hashing."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-a-secret-0123456789abcdefghij")
os.environ.setdefault("AUDIT_KEY", "tests-only-audit-key-not-a-secret-0123456789")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")

from broker.settings import *  # noqa: F403

# Password hashing is deliberately slow; tests create many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
# Static files from the source folders, as in development (no collectstatic before tests).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
CELERY_TASK_EAGER_PROPAGATES = True
# Off, so that tests asking for several roles in a row need no step-up for being unusual; the tests
# of the anomaly flags (tests/approvals/test_anomaly.py and their API and portal tests) switch it on.
ANOMALY_SCORING = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False

# Integration runs (DATABASE_URL and CELERY_BROKER_URL set) use a queue of their own, so that
# concurrent runs, or messages left over by an earlier run, never reach this run's worker.
if os.environ.get("CELERY_BROKER_URL"):
    import uuid

    _RUN = uuid.uuid4().hex[:10]
    CELERY_TASK_DEFAULT_QUEUE = f"broker-test-{_RUN}"
    CELERY_NOTIFICATIONS_QUEUE = f"notifications-test-{_RUN}"
    CELERY_TASK_QUEUES = {CELERY_TASK_DEFAULT_QUEUE: {}, CELERY_NOTIFICATIONS_QUEUE: {}}
    CELERY_TASK_ROUTES = {"notifications.tasks.*": {"queue": CELERY_NOTIFICATIONS_QUEUE}}

# Rate-limit counters live in a per-process cache that each test empties (tests/conftest.py), even
# when CELERY_BROKER_URL points at a Redis that other runs share.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests"}}
