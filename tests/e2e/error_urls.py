"""The broker's routes plus two that fail on purpose, for the browser tests of the error pages."""

from django.core.exceptions import SuspiciousOperation
from django.urls import path

from broker.urls import handler400, handler403, handler404, handler500
from broker.urls import urlpatterns as broker_urlpatterns

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]


def boom(request):
    raise RuntimeError("a bug, on purpose (tests/e2e/error_urls.py)")


def bad(request):
    raise SuspiciousOperation("a request the broker cannot read, on purpose")


urlpatterns = [path("boom/", boom), path("bad/", bad), *broker_urlpatterns]
