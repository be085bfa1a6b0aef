from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.http import require_GET

from broker import account_views


@require_GET
def healthz(request):
    return HttpResponse("ok\n", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("account/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("account/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/mfa/verify/", account_views.mfa_verify, name="mfa-verify"),
    # The web portal (last: its patterns start at the root).
    path("", include("broker.portal_urls")),
]
