"""The OpenAPI schema: generated from the code, committed in docs/openapi.yaml, served with docs."""

from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
REGENERATE = "make openapi"


def generated() -> str:
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return out.getvalue()


def test_committed_schema_matches_the_code():
    assert SCHEMA_FILE.read_text() == generated(), f"docs/openapi.yaml is out of date: run `{REGENERATE}`"


def test_schema_has_every_endpoint_of_the_contract():
    paths = yaml.safe_load(SCHEMA_FILE.read_text())["paths"]
    operations = {(method.upper(), path) for path, item in paths.items() for method in item}
    assert operations == {
        ("GET", "/api/v1/roles/"),
        ("POST", "/api/v1/requests/"),
        ("GET", "/api/v1/requests/"),
        ("GET", "/api/v1/requests/{id}/"),
        ("POST", "/api/v1/requests/{id}/approve/"),
        ("POST", "/api/v1/requests/{id}/deny/"),
        ("POST", "/api/v1/requests/{id}/cancel/"),
        ("GET", "/api/v1/grants/"),
        ("GET", "/api/v1/grants/{id}/"),
        ("POST", "/api/v1/grants/{id}/revoke/"),
        ("POST", "/api/v1/grants/{id}/extend/"),
        ("GET", "/api/v1/check/"),
        ("POST", "/api/v1/signals/"),
        ("GET", "/api/v1/tokens/"),
        ("POST", "/api/v1/tokens/"),
        ("DELETE", "/api/v1/tokens/{id}/"),
        ("GET", "/api/v1/audit/"),
        ("GET", "/api/v1/audit/export/"),
        ("GET", "/api/v1/grants/awaiting-review/"),
        ("POST", "/api/v1/grants/{id}/review/"),
        ("GET", "/api/v1/reconciliation/"),
        ("GET", "/api/v1/eligibility/unused/"),
        ("GET", "/api/v1/eligibility/reviews/"),
        ("GET", "/api/v1/eligibility/reviews/{id}/"),
        ("POST", "/api/v1/eligibility/reviews/{id}/confirm/"),
        ("POST", "/api/v1/eligibility/reviews/{id}/remove/"),
        ("GET", "/api/v1/eligibility/reviews/patch/"),
        ("POST", "/api/v1/reconciliation/run/"),
        ("POST", "/api/v1/policy/plan/"),
        ("POST", "/api/v1/policy/apply/"),
    }


def operations():
    schema = yaml.safe_load(SCHEMA_FILE.read_text())
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def schema():
    return yaml.safe_load(SCHEMA_FILE.read_text())


def test_operation_ids_read_as_actions():
    ids = {operation["operationId"] for _, _, operation in operations()}
    assert {"requests_approve", "grants_revoke", "check_access", "tokens_revoke", "audit_export"} <= ids
    # drf-spectacular's defaults name the HTTP verb, not the action (`requests_approve_create`).
    verbs = [i for i in ids if i.endswith(("_destroy", "_retrieve", "_update", "_partial_update", "_create"))]
    assert sorted(verbs) == ["requests_create", "tokens_create"]
    assert len(ids) == len(list(operations()))


def test_every_operation_has_a_tag_a_scope_its_error_codes_and_a_default_error():
    tags = {tag["name"] for tag in schema()["tags"]}
    for method, path, operation in operations():
        assert len(operation["tags"]) == 1 and operation["tags"][0] in tags, (method, path)
        assert operation["x-required-scope"] in ("read", "request", "approve", "admin", "any"), (method, path)
        assert "**Scope**" in operation["description"], (method, path)
        codes = operation["x-error-codes"]
        assert set(codes) == {s for s in operation["responses"] if s[0] == "4"}, (method, path)
        assert operation["responses"]["default"] == {"$ref": "#/components/responses/Error"}, (method, path)


def test_error_answers_are_shared_components_with_their_headers():
    components = schema()["components"]
    for _, _, operation in operations():
        for status, response in operation["responses"].items():
            if status[0] == "4":
                assert set(response) == {"$ref"}, status
    assert set(components["responses"]["TooManyRequests"]["headers"]) == {"Retry-After"}
    assert set(components["responses"]["Unauthorized"]["headers"]) == {"WWW-Authenticate"}
    assert components["headers"]["Retry-After"]["required"] is True


def test_approving_lists_the_codes_an_approver_can_meet():
    approve = schema()["paths"]["/api/v1/requests/{id}/approve/"]["post"]
    assert {"self_approval", "not_approver", "mfa_required", "mfa_invalid", "mfa_not_enrolled"} <= set(
        approve["x-error-codes"]["403"]
    )
    assert "insufficient_scope" in approve["x-error-codes"]["403"]
    assert "already_decided" in approve["x-error-codes"]["409"]


def test_metadata_names_servers_a_license_and_both_ways_to_authenticate():
    document = schema()
    assert document["servers"] and document["info"]["license"]["name"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["csrfToken"] == {**schemes["csrfToken"], "in": "header", "name": "X-CSRFToken"}
    approve = document["paths"]["/api/v1/requests/{id}/approve/"]["post"]
    assert {"cookieAuth": [], "csrfToken": []} in approve["security"]
    assert {"cookieAuth": []} in document["paths"]["/api/v1/requests/"]["get"]["security"]


def test_request_bodies_declare_no_defaults_that_would_make_generated_fields_required():
    document = schema()
    bodies = {
        operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        for _, _, operation in operations()
        if "requestBody" in operation
    }
    for name in bodies:
        for field, spec in document["components"]["schemas"][name].get("properties", {}).items():
            assert "default" not in spec, (name, field)


def test_the_idempotency_key_declares_its_limits_and_replays_say_so():
    create = schema()["paths"]["/api/v1/requests/"]["post"]
    key = next(p for p in create["parameters"] if p["name"] == "Idempotency-Key")
    assert key["schema"] == {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"}
    assert key["examples"]
    assert "Idempotent-Replayed" in create["responses"]["201"]["headers"]


def test_the_export_is_its_own_operation_answering_only_csv_or_json_lines():
    export = schema()["paths"]["/api/v1/audit/export/"]["get"]
    assert set(export["responses"]["200"]["content"]) == {"text/csv", "application/x-ndjson"}
    assert export["responses"]["200"]["headers"]["Content-Disposition"]["required"] is True
    names = {p["name"] for p in export["parameters"]}
    assert names == {"format", "actor", "action", "role", "subject", "channel", "target_type", "target_id", "since",
                     "until"}  # fmt: skip
    listing = schema()["paths"]["/api/v1/audit/"]["get"]
    assert set(listing["responses"]["200"]["content"]) == {"application/json"}
    assert "format" not in {p["name"] for p in listing["parameters"]}
    assert schema()["components"]["schemas"]["AuditExportRow"]["required"][0] == "seq"


def test_end_reason_is_a_plain_nullable_enum():
    end_reason = schema()["components"]["schemas"]["Grant"]["properties"]["end_reason"]
    assert "oneOf" not in end_reason
    assert end_reason["nullable"] is True and end_reason["type"] == "string"
    assert {"expiry", "relinquished", None} <= set(end_reason["enum"])


def test_lists_document_their_next_link_and_the_audit_trail_its_next_cursor():
    schemas = schema()["components"]["schemas"]
    assert "follow it as it is" in schemas["PaginatedGrantList"]["properties"]["next"]["description"]
    assert "cursor" in schemas["PaginatedAuditEventList"]["properties"]["next_cursor"]["description"]


def test_every_operation_documents_its_error_answers():
    paths = yaml.safe_load(SCHEMA_FILE.read_text())["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert {"401", "403", "429"} <= codes, (method, path)
            if method == "post":
                assert {"400", "409", "413", "415"} <= codes, (method, path)
            if "{id}" in path:
                assert "404" in codes, (method, path)


@pytest.mark.django_db
def test_schema_is_served_to_anyone(client):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    assert yaml.safe_load(response.content)["info"]["title"] == "Privileged access broker API"


@pytest.mark.django_db
def test_docs_page_renders_with_local_assets_only(client):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assert "cdn." not in page and "https://" not in page.replace("https://swagger.io", "")
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
