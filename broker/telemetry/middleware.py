"""The request id of every request (taken or made, echoed), and the HTTP metrics of its answer."""

from __future__ import annotations

import time

from django.core.signals import request_finished
from django.dispatch import receiver

from broker.telemetry import metrics
from broker.telemetry.context import HEADER, accept_or_new, request_id


class RequestIdMiddleware:
    """Outermost middleware: binds the request id for everything the request does, logs included,
    sets ``X-Request-ID`` on the answer, and counts the answer by surface, method and status."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        rid = accept_or_new(request.headers.get(HEADER))
        request.request_id = rid
        # Cleared when the response is closed (request_finished), not here: Django logs a 4xx/5xx answer
        # ("Bad Request: ...") once this middleware has returned, and that line carries the id too.
        request_id.set(rid)
        start = time.perf_counter()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            response[HEADER] = rid
            return response
        finally:
            metrics.observe_response(request.path, request.method, status, time.perf_counter() - start)


@receiver(request_finished, dispatch_uid="broker.telemetry.request_finished")
def _forget_request_id(**kwargs) -> None:
    request_id.set(None)
