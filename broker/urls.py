from django.contrib import admin
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.http import require_GET


@require_GET
def healthz(request):
    return HttpResponse("ok\n", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]
