"""OpenAPI for the API (drf-spectacular): every error answer documented, strict request bodies."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

from broker.api.errors import ErrorSerializer


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (`pab_...`): `manage.py create_api_token USERNAME` or `POST tokens/`.",
        }


class AutoSchema(SpectacularAutoSchema):
    """Documents the error answers each operation can give, with the one error body."""

    def _error_codes(self) -> set[str]:
        codes = {"401", "403", "429"}
        if self.method in ("POST", "PUT", "PATCH"):
            codes |= {"400", "409", "413", "415"}
        if self.method == "GET":
            codes.add("400")  # a bad filter or query parameter
        if "{" in self.path or self._is_list_view() or self.method == "DELETE":
            codes.add("404")  # not visible to you, or a page past the end
        codes |= set(getattr(self.view, "extra_error_codes", ()))
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in sorted(self._error_codes()):
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code, ["application/json"], direction)
        return responses


ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}


def postprocess_schema(result, generator, request, public):
    """Say what the code enforces but drf-spectacular cannot see: ids in paths are integers (the
    URL pattern bounds them), and request bodies reject unknown fields (StrictSerializer)."""
    components = result.get("components", {}).get("schemas", {})
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "id":
                    parameter["schema"] = dict(ID_SCHEMA)
            for content in operation.get("requestBody", {}).get("content", {}).values():
                ref = content.get("schema", {}).get("$ref", "")
                component = components.get(ref.rsplit("/", 1)[-1])
                if component is not None and component.get("type") == "object":
                    component["additionalProperties"] = False
    return result
