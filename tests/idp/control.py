"""What a test changes at the provider, over HTTP on loopback, with the shared key IDP_CONTROL_KEY."""

import hmac
import json
import os

from django.contrib.auth.models import Group, User
from django.http import HttpResponseForbidden, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import get_application_model

# username -> {"amr": [...], "acr": "...", "auth_age": seconds}; the next ID token's fault.
PROFILES: dict[str, dict] = {}
FAULT: dict[str, str] = {}


def _authorised(request) -> bool:
    return hmac.compare_digest(request.headers.get("X-Control-Key", ""), os.environ["IDP_CONTROL_KEY"])


@csrf_exempt
def person(request):
    """Create or update a person: username, password, email, groups, amr, acr, auth_age."""
    if not _authorised(request):
        return HttpResponseForbidden()
    data = json.loads(request.body)
    user, _ = User.objects.get_or_create(username=data["username"])
    user.email = data.get("email", user.email)
    user.first_name = data.get("first_name", user.first_name)
    user.last_name = data.get("last_name", user.last_name)
    if "password" in data:
        user.set_password(data["password"])
    user.save()
    if "groups" in data:
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in data["groups"]])
    profile = PROFILES.setdefault(user.username, {})
    for key in ("amr", "acr", "auth_age"):
        if key in data:
            profile[key] = data[key]
    return JsonResponse({"username": user.username})


@csrf_exempt
def fault(request):
    """The next ID token is: tampered, wrong_audience(_with_our_azp), wrong_nonce or expired."""
    if not _authorised(request):
        return HttpResponseForbidden()
    FAULT["next"] = json.loads(request.body)["fault"]
    return JsonResponse({"next": FAULT["next"]})


@csrf_exempt
def redirect_uris(request):
    """Register one more redirect URI for the broker's client (a live server's port)."""
    if not _authorised(request):
        return HttpResponseForbidden()
    uri = json.loads(request.body)["uri"]
    app = get_application_model().objects.get(client_id=os.environ["IDP_CLIENT_ID"])
    uris = app.redirect_uris.split()
    if uri not in uris:
        app.redirect_uris = " ".join([*uris, uri])
        app.save(update_fields=["redirect_uris"])
    return JsonResponse({"redirect_uris": app.redirect_uris.split()})


@csrf_exempt
def mint(request):
    """Sign a JWT access token (RFC 9068 style) with the provider's own key, as an authorization server
    does for an API: {"claims": {...}}; iss, iat and exp (in 5 minutes) are filled in unless given."""
    import time

    from django.conf import settings
    from jwcrypto import jwk, jwt

    if not _authorised(request):
        return HttpResponseForbidden()
    key = jwk.JWK.from_pem(settings.OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"].encode())
    now = int(time.time())
    claims = {"iss": settings.ISSUER, "iat": now, "exp": now + 300, **json.loads(request.body)["claims"]}
    token = jwt.JWT(header={"alg": "RS256", "typ": "at+jwt", "kid": key.thumbprint()}, claims=claims)
    token.make_signed_token(key)
    return JsonResponse({"token": token.serialize()})
