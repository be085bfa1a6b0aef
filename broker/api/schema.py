"""OpenAPI for the API (drf-spectacular): what generated clients need to use it without surprises.

Each view declares, next to its code, what the schema cannot see: ``operation_ids`` (names that read
as actions: ``requests_approve``, ``check_access``), ``required_scopes`` (shown on each operation
and as ``x-required-scope``) and ``error_codes`` (the ``error`` values each status can carry, shown
in the description and as ``x-error-codes``), each keyed by action or by HTTP method. Error answers
point at shared response components (with ``Retry-After`` on every 429 and ``WWW-Authenticate`` on
401), every operation has a ``default`` error answer, and request bodies refuse unknown fields.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

from broker.api.errors import ErrorSerializer
from broker.audit.export import ROW_SCHEMA

ANY_SCOPE = "any"  # accounts.authentication.ANY_SCOPE (accounts sits above the kernel)
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "A personal API token (`pab_...`): `manage.py create_api_token USERNAME` or `POST tokens/`. Its "
                "scopes (`read`, `request`, `approve`, `admin`) narrow what its user may do: each operation says "
                "which scope it needs (`x-required-scope`)."
            ),
        }


class SessionScheme(OpenApiAuthenticationExtension):
    """The portal's session cookie; unsafe methods also need the CSRF token in a header (Django's check)."""

    target_class = "rest_framework.authentication.SessionAuthentication"
    name = ["cookieAuth", "csrfToken"]
    priority = 1

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "apiKey",
                "in": "cookie",
                "name": "sessionid",
                "description": "The portal's session (sign in at /account/login/). It holds every scope of its user.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-CSRFToken",
                "description": (
                    "With the session cookie, every POST and DELETE also sends the value of the `csrftoken` cookie "
                    "in this header (and, over HTTPS, a `Referer` of the same origin); otherwise 403."
                ),
            },
        ]

    def get_security_requirement(self, auto_schema):
        if auto_schema.method in UNSAFE:
            return {"cookieAuth": [], "csrfToken": []}
        return {"cookieAuth": []}


# --- Errors -----------------------------------------------------------------------------------------

# Shared error answers: status -> (component name, description, headers).
ERROR_RESPONSES = {
    "400": (
        "BadRequest",
        "Invalid input: `fields` names each problem (an unknown body field or query parameter is one too), or the "
        "body is not valid JSON.",
        [],
    ),
    "401": (
        "Unauthorized",
        "No credentials, or a token that is unknown, expired or revoked.",
        ["WWW-Authenticate"],
    ),
    "403": ("Forbidden", "Authenticated, but not allowed: `error` says why.", []),
    "404": ("NotFound", "No such object, or it is not visible to you (the two are not told apart).", []),
    "406": ("NotAcceptable", "The `Accept` header allows none of the formats this operation answers in.", []),
    "409": ("Conflict", "The object's current state forbids the action: `error` says which.", []),
    "413": ("PayloadTooLarge", "The body is larger than this operation reads (64 KiB; 1 MiB for policies).", []),
    "415": ("UnsupportedMediaType", "The body is not `application/json`.", []),
    "429": (
        "TooManyRequests",
        "Too many failed authentications from your address, or wrong one-time codes for your user: try again "
        "after `Retry-After` seconds.",
        ["Retry-After"],
    ),
}
DEFAULT_ERROR = "Error"

HEADERS = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "WWW-Authenticate": {
        "description": 'How to authenticate: `Bearer realm="api"`.',
        "required": True,
        "schema": {"type": "string"},
    },
}

# The `error` values any operation can give, by status; each operation adds its own (`error_codes`).
GENERIC_CODES = {
    "400": ["invalid"],
    "401": ["not_authenticated", "invalid_token"],
    "403": ["forbidden"],
    "404": ["not_found"],
    "406": ["not_acceptable"],
    "413": ["payload_too_large"],
    "415": ["unsupported_media_type"],
    "429": ["throttled"],
}

ERROR_EXAMPLES = {
    "400": {"error": "invalid", "detail": "invalid input: role: This field is required.", "fields": {"role": ["This field is required."]}},
    "401": {"error": "not_authenticated", "detail": "Authentication credentials were not provided."},
    "403": {"error": "mfa_required", "detail": "approving prod-db-admin needs a fresh MFA verification (a one-time code)"},
    "404": {"error": "not_found", "detail": "not found (or not visible to you)"},
    "406": {"error": "not_acceptable", "detail": "the export is CSV (text/csv) or JSON Lines (application/x-ndjson)"},
    "409": {"error": "already_decided", "detail": "request 3 is already approved"},
    "413": {"error": "payload_too_large", "detail": "the request body is larger than 65536 bytes"},
    "415": {"error": "unsupported_media_type", "detail": 'Unsupported media type "text/plain" in request.'},
    "429": {"error": "throttled", "detail": "too many wrong codes; try again in 60 s"},
}  # fmt: skip


def _by_action(view, attribute: str, method: str):
    """A view's per-operation declaration, keyed by its action (viewsets) or by HTTP method."""
    declared = getattr(view, attribute, None) or {}
    action = getattr(view, "action", None)
    if action and action in declared:
        return declared[action]
    return declared.get(method)


class AutoSchema(SpectacularAutoSchema):
    """Operation ids, scopes and error codes from the views' declarations; errors as shared components."""

    def get_operation_id(self) -> str:
        return _by_action(self.view, "operation_ids", self.method) or super().get_operation_id()

    def required_scope(self) -> str | None:
        return _by_action(self.view, "required_scopes", self.method)

    def error_codes(self) -> dict[str, list[str]]:
        statuses = {"401", "403", "429"}
        if self.method in ("POST", "PUT", "PATCH"):
            statuses |= {"400", "409", "413", "415"}
        if self.method == "GET":
            statuses.add("400")  # a bad filter or query parameter
        if "{" in self.path or self._is_list_view() or self.method == "DELETE":
            statuses.add("404")  # not visible to you, or a page past the end
        declared = _by_action(self.view, "error_codes", self.method) or {}
        statuses |= set(declared)
        scope = self.required_scope()
        codes = {}
        for status in sorted(statuses):
            found = list(GENERIC_CODES.get(status, []))
            if status == "400" and self.method in ("POST", "PUT", "PATCH"):
                found.append("parse_error")
            if status == "403" and scope and scope != ANY_SCOPE:
                found.append("insufficient_scope")
            found += [code for code in declared.get(status, []) if code not in found]
            codes[status] = found
        return codes

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is not None:
            # Here rather than in get_description, which an extend_schema(description=...) replaces.
            operation["description"] = self._described(operation.get("description", ""))
        return operation

    def _described(self, description: str) -> str:
        scope = self.required_scope()
        parts = [description.strip()] if description.strip() else []
        if scope == ANY_SCOPE:
            parts.append("**Scope**: any (what the token may do is checked against the object).")
        elif scope:
            parts.append(f"**Scope**: `{scope}`.")
        errors = "; ".join(
            f"{status} {', '.join(f'`{code}`' for code in codes)}" for status, codes in self.error_codes().items()
        )
        parts.append(f"**Errors** (`error`): {errors}.")
        return "\n\n".join(parts)

    def get_extensions(self) -> dict:
        extensions = dict(super().get_extensions() or {})
        scope = self.required_scope()
        if scope:
            extensions["x-required-scope"] = scope
        extensions["x-error-codes"] = self.error_codes()
        return extensions

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        self.resolve_serializer(ErrorSerializer, direction)  # the `Error` component the shared answers use
        for status in self.error_codes():
            if status not in responses and status in ERROR_RESPONSES:
                responses[status] = {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}
        responses["default"] = {"$ref": f"#/components/responses/{DEFAULT_ERROR}"}
        return responses


# --- Post-processing ---------------------------------------------------------------------------------

ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}


def _error_components() -> tuple[dict, dict]:
    error = {"$ref": "#/components/schemas/Error"}
    responses = {
        name: {
            "description": description,
            "content": {"application/json": {"schema": error, "example": ERROR_EXAMPLES[status]}},
            **({"headers": {h: {"$ref": f"#/components/headers/{h}"} for h in headers}} if headers else {}),
        }
        for status, (name, description, headers) in ERROR_RESPONSES.items()
    }
    responses[DEFAULT_ERROR] = {
        "description": "Any other error, in the same format (a 5xx never carries a stack trace).",
        "content": {"application/json": {"schema": error}},
    }
    return responses, dict(HEADERS)


def _plain_nullable_enums(schemas: dict) -> None:
    """`oneOf: [XEnum, NullEnum]` (drf-spectacular's nullable choice) as one plain nullable enum, which
    generated clients read as an optional string enum rather than a union of two types."""
    used = set()
    for component in schemas.values():
        for prop in component.get("properties", {}).values():
            refs = [option.get("$ref", "").rsplit("/", 1)[-1] for option in prop.get("oneOf", [])]
            if len(refs) == 2 and refs[1] == "NullEnum" and refs[0] in schemas:
                enum = schemas[refs[0]]
                del prop["oneOf"]
                prop.update({"type": enum.get("type", "string"), "enum": [*enum["enum"], None], "nullable": True})
                used.add(refs[0])
    referenced = repr(schemas)
    for name in [*used, "NullEnum"]:
        if f"/{name}'" not in referenced:
            schemas.pop(name, None)


def postprocess_schema(result, generator, request, public):
    """Say what the code enforces but drf-spectacular cannot see: ids in paths are integers (the
    URL pattern bounds them), request bodies reject unknown fields (StrictSerializer); and add the
    shared error answers, their headers and the audit export's row."""
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "id":
                    parameter["schema"] = dict(ID_SCHEMA)
            for content in operation.get("requestBody", {}).get("content", {}).values():
                ref = content.get("schema", {}).get("$ref", "")
                component = schemas.get(ref.rsplit("/", 1)[-1])
                if component is not None and component.get("type") == "object":
                    component["additionalProperties"] = False
    _plain_nullable_enums(schemas)
    responses, headers = _error_components()
    components["responses"] = {**components.get("responses", {}), **responses}
    components["headers"] = {**components.get("headers", {}), **headers}
    schemas["AuditExportRow"] = ROW_SCHEMA
    return result
