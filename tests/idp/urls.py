from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from django.urls import include, path

from tests.idp import control

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("control/person", control.person),
    path("control/fault", control.fault),
    path("control/redirect-uri", control.redirect_uris),
    path("control/mint", control.mint),
    path("ping", lambda request: HttpResponse("ok")),
]
