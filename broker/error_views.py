"""Django's error views (400, 403, 404, 500 and CSRF failure): JSON under /api/, the portal's pages elsewhere.

Free of Django REST framework: Django imports these by name at start-up (the system checks import
CSRF_FAILURE_VIEW), before anything else needs DRF.
"""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import csrf, defaults
from django.views.decorators.csrf import csrf_exempt

# Seconds a client is asked to wait when a service the broker needs is unreachable (503).
RETRY_AFTER = 5


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


@csrf_exempt  # it changes nothing; a CSRF refusal would only hide the 404 behind an HTML 403
def api_not_found(request, *args, **kwargs):
    """Any unknown path under /api/: JSON, never Django's HTML page (nor a slash redirect)."""
    return JsonResponse({"error": "not_found", "detail": f"no such endpoint: {request.path}"}, status=404)


def _unavailable(exc: BaseException | None) -> bool:
    """The database, or Redis (cache, Celery broker), cannot be reached or refuses connections
    (down, restarting, "too many clients"): a passing outage, not a bug."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    try:
        from kombu.exceptions import OperationalError as BrokerUnavailable
        from redis.exceptions import ConnectionError as RedisDown
        from redis.exceptions import TimeoutError as RedisSlow
    except ImportError:  # pragma: no cover - both come with Celery's Redis extra
        return False
    return isinstance(exc, BrokerUnavailable | RedisDown | RedisSlow)


def service_unavailable(request):
    """503 with Retry-After: JSON under /api/, a plain page elsewhere. Renders without the
    database (no context processors, no session), since the database may be what is down."""
    headers = {"Retry-After": str(RETRY_AFTER)}
    if _is_api(request):
        return JsonResponse(
            {
                "error": "unavailable",
                "detail": f"the service is unavailable for a moment; try again in {RETRY_AFTER} s",
            },
            status=503,
            headers=headers,
        )
    return HttpResponse(render_to_string("503.html", {"retry_after": RETRY_AFTER}), status=503, headers=headers)


def server_error(request, *args, **kwargs):
    # Django calls this while handling the exception: an outage of the database or of Redis is a
    # 503 the client may retry (check/ included: it never answers "allowed" without the database).
    if _unavailable(sys.exc_info()[1]):
        return service_unavailable(request)
    if _is_api(request):
        return JsonResponse({"error": "server_error", "detail": "an unexpected error; it was logged"}, status=500)
    return defaults.server_error(request, *args, **kwargs)


def bad_request(request, exception, *args, **kwargs):
    if _is_api(request):
        return JsonResponse({"error": "bad_request", "detail": "the request could not be read"}, status=400)
    return defaults.bad_request(request, exception, *args, **kwargs)


def permission_denied(request, exception, *args, **kwargs):
    if _is_api(request):
        return JsonResponse({"error": "forbidden", "detail": "forbidden"}, status=403)
    return defaults.permission_denied(request, exception, *args, **kwargs)


def csrf_failure(request, reason="", *args, **kwargs):
    """CSRF_FAILURE_VIEW: the portal keeps Django's page; the API answers in JSON."""
    if _is_api(request):
        return JsonResponse({"error": "csrf_failed", "detail": f"CSRF check failed: {reason}"}, status=403)
    return csrf.csrf_failure(request, reason, *args, **kwargs)


def page_not_found(request, exception, *args, **kwargs):
    if _is_api(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception, *args, **kwargs)
