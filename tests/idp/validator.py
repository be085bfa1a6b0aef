"""The provider's claims and the faults a test asks for (tests/idp/control.py keeps both)."""

import base64
import json
import time

from oauth2_provider.oauth2_validators import OAuth2Validator

from tests.idp import control


class Validator(OAuth2Validator):
    # Every claim below goes into the ID token, whatever the scopes (groups, amr and acr are not
    # tied to a standard scope).
    oidc_claim_scope = None

    def get_additional_claims(self, request):
        user = request.user
        profile = control.PROFILES.get(user.get_username(), {})
        claims = {
            "preferred_username": user.get_username(),
            "email": user.email,
            "given_name": user.first_name,
            "family_name": user.last_name,
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }
        for key in ("amr", "acr"):
            if profile.get(key) is not None:
                claims[key] = profile[key]
        return claims

    def get_id_token_dictionary(self, token, token_handler, request):
        claims, expiration = super().get_id_token_dictionary(token, token_handler, request)
        profile = control.PROFILES.get(request.user.get_username(), {})
        if profile.get("auth_age"):
            claims["auth_time"] -= int(profile["auth_age"])  # they signed in here that long ago
        if control.FAULT.get("next") == "expired":
            claims["exp"] = int(time.time()) - 3600
        return claims, expiration

    def finalize_id_token(self, id_token, token, token_handler, request):
        fault = control.FAULT.pop("next", None)
        if fault == "wrong_audience":
            id_token["aud"] = "another-client"
        elif fault == "wrong_audience_with_our_azp":
            id_token["aud"] = "another-client"
            id_token["azp"] = request.client_id  # issued to us, for someone else's audience
        elif fault == "wrong_nonce":
            id_token["nonce"] = "a-nonce-from-another-sign-in"
        elif fault == "expired":
            id_token["iat"] = int(time.time()) - 7200
            control.FAULT["next"] = "expired"  # read again by get_id_token_dictionary, called by super()
        signed = super().finalize_id_token(id_token, token, token_handler, request)
        control.FAULT.pop("next", None)
        if fault == "tampered":
            header, payload, signature = signed.split(".")
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            claims["preferred_username"] = "root"  # the signature no longer matches
            payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
            signed = f"{header}.{payload}.{signature}"
        return signed
