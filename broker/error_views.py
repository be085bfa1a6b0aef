"""Django's error views (400, 403, 404, 500 and CSRF failure): JSON under /api/, the portal's pages elsewhere.

Free of Django REST framework: Django imports these by name at start-up (the system checks import
CSRF_FAILURE_VIEW), before anything else needs DRF.
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views import csrf, defaults
from django.views.decorators.csrf import csrf_exempt


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


@csrf_exempt  # it changes nothing; a CSRF refusal would only hide the 404 behind an HTML 403
def api_not_found(request, *args, **kwargs):
    """Any unknown path under /api/: JSON, never Django's HTML page (nor a slash redirect)."""
    return JsonResponse({"error": "not_found", "detail": f"no such endpoint: {request.path}"}, status=404)


def server_error(request, *args, **kwargs):
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
