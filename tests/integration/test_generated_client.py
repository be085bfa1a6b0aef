"""A Python client generated from the committed docs/openapi.yaml (openapi-python-client) runs the
README's API story against a live server and a real worker, and every answer parses into the
schema's models with nothing left over.

What a user of a generated client meets: operation names, request bodies without surprise defaults,
the audit export as text, errors as the shared Error model, `Idempotent-Replayed` on a retry.
"""

import csv
import importlib
import io
import subprocess
import sys
import uuid
from pathlib import Path

import attrs
import pytest

from accounts.tokens import token_create
from broker.catalog import AUDITORS_GROUP
from broker.models import Channel
from grants.models import Grant
from tests.factories import EligibilityFactory, GroupFactory, RoleFactory, StageFactory, UserFactory
from tests.integration.conftest import wait_for
from tests.otp import authenticator, code_of

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "docs" / "openapi.yaml"
PACKAGE = "broker_client"


@pytest.fixture(scope="module")
def client_package(tmp_path_factory):
    """Generate the client from the committed schema, as a user would, and import it."""
    where = tmp_path_factory.mktemp("generated")
    config = where / "config.yaml"
    config.write_text(f"package_name_override: {PACKAGE}\nproject_name_override: broker-client\npost_hooks: []\n")
    command = [
        str(Path(sys.executable).with_name("openapi-python-client")),
        "generate", "--path", str(SCHEMA), "--config", str(config),
        "--meta", "none", "--output-path", str(where / PACKAGE),
    ]  # fmt: skip
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The generator warns (and skips the operation) about anything in the schema it cannot use.
    assert "Warning" not in output and "Unable to" not in output, output
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def api(package, name: str):
    """An operation module by its operationId, e.g. api(pkg, "requests_approve")."""
    tag = name.split("_", 1)[0]
    return importlib.import_module(f"{package.__name__}.api.{tag}.{name}")


def leftovers(value, path="answer") -> list[str]:
    """Fields of an answer that the schema does not declare (the models keep them aside)."""
    found = []
    if attrs.has(type(value)):
        declared = [field.name for field in attrs.fields(type(value)) if field.name != "additional_properties"]
        if declared:  # a model with no declared field is a map (`fields`, `data`): its keys are its content
            found += [f"{path}.{key}" for key in getattr(value, "additional_properties", {})]
        for name in declared:
            found += leftovers(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += leftovers(item, f"{path}[{i}]")
    return found


def parsed(response, status: int, model_name: str | None = None):
    """The answer's status and model, and no field the schema does not declare."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    answer = response.parsed
    if model_name is not None:
        assert type(answer).__name__ == model_name, (type(answer).__name__, response.content[:300])
    assert leftovers(answer) == [], response.content[:500]
    return answer


def demo_world():
    """The demo's people and role for the README story: alice asks, carol approves, erin audits."""
    alice, carol, erin = UserFactory(username="alice"), UserFactory(username="carol"), UserFactory(username="erin")
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    erin.groups.add(GroupFactory(name=AUDITORS_GROUP))
    for person in (alice, carol, root):
        authenticator(person)
    role = RoleFactory(
        slug="prod-db-admin",
        name="Production database admin",
        requires_mfa=True,
        connector_config={"group": "prod-db-admins"},
    )
    StageFactory(role=role, users=[carol])
    EligibilityFactory(role=role, user=alice)

    def token(user, scopes):
        return token_create(user=user, scopes=scopes, via=Channel.CLI)[1]

    return {
        "alice": (alice, token(alice, "read,request,approve")),
        "carol": (carol, token(carol, "read,approve")),
        "erin": (erin, token(erin, "read")),
        "root": (root, token(root, "read,request,approve,admin")),
    }


@pytest.mark.django_db(transaction=True)
def test_the_readme_api_story_runs_with_a_generated_client(client_package, live_server, worker):
    people = demo_world()
    models = importlib.import_module(f"{PACKAGE}.models")

    def client(name):
        return client_package.AuthenticatedClient(
            base_url=live_server.url, token=people[name][1], raise_on_unexpected_status=True
        )

    alice, carol, erin, root = (client(n) for n in ("alice", "carol", "erin", "root"))

    # What may alice ask for?
    roles = parsed(api(client_package, "roles_list").sync_detailed(client=alice), 200, "PaginatedRoleList")
    assert [r.slug for r in roles.results] == ["prod-db-admin"]

    # She asks for prod-db-admin for 10 minutes with her code; the generated client sends the body as
    # the schema has it, and a retry with the same Idempotency-Key replays the first answer.
    body = models.NewAccessRequest(
        role="prod-db-admin", duration_seconds=600, justification="INC-42: vacuum", otp=code_of(people["alice"][0])
    )
    key = str(uuid.uuid4())
    create = api(client_package, "requests_create")
    request = parsed(create.sync_detailed(client=alice, body=body, idempotency_key=key), 201, "AccessRequest")
    assert (request.status.value, request.requester, request.current_stage) == ("pending", "alice", 1)
    body.ticket, body.starts_at = "", None  # the defaults, sent explicitly: the same request
    again = create.sync_detailed(client=alice, body=body, idempotency_key=key)
    assert parsed(again, 201, "AccessRequest").id == request.id
    assert again.headers["Idempotent-Replayed"] == "true"

    # alice cannot approve her own request: a 403 parsed as the schema's Error.
    approve = api(client_package, "requests_approve")
    refused = parsed(
        approve.sync_detailed(client=alice, id=request.id, body=models.ApproveInput(comment="me")), 403, "Error"
    )
    assert refused.error == "self_approval"

    # carol approves with her code; the worker switches the grant on.
    decision = models.ApproveInput(comment="go ahead", otp=code_of(people["carol"][0]))
    approved = parsed(approve.sync_detailed(client=carol, id=request.id, body=decision), 200, "AccessRequest")
    assert approved.status.value == "approved" and approved.approvals[0].approver == "carol"

    check = api(client_package, "check_access")
    answer = wait_for(
        lambda: (a := check.sync(client=alice, role="prod-db-admin")).allowed and a,
        timeout=30,
        what="the worker to switch the grant on",
    )
    assert leftovers(answer) == [] and answer.grant == approved.grant

    grant = parsed(api(client_package, "grants_get").sync_detailed(client=alice, id=answer.grant), 200, "Grant")
    assert (grant.status.value, grant.end_reason, grant.effective) == ("active", None, True)

    # alice is done early: she relinquishes, and check says no from then on.
    revoke = api(client_package, "grants_revoke")
    ended = parsed(
        revoke.sync_detailed(client=alice, id=grant.id, body=models.RevokeInput(reason="done")), 200, "Grant"
    )
    assert ended.status.value in ("revoking", "revoked") and ended.effective is False
    assert check.sync(client=alice, role="prod-db-admin").allowed is False
    wait_for(lambda: Grant.objects.get(pk=grant.id).status == "revoked", timeout=30, what="the removal")
    assert api(client_package, "grants_get").sync(client=alice, id=grant.id).end_reason.value == "relinquished"

    # Every step is in the audit trail: a page of JSON, and the export as CSV text.
    page = parsed(
        api(client_package, "audit_list").sync_detailed(client=erin, role="prod-db-admin", page_size=2),
        200,
        "PaginatedAuditEventList",
    )
    assert page.next_cursor and len(page.results) == 2
    export = api(client_package, "audit_export")
    text = export.sync(client=erin, format_=models.AuditExportFormat("csv"), role="prod-db-admin")
    rows = list(csv.DictReader(io.StringIO(text)))
    actions = [row["action"] for row in rows]
    assert actions[:2] == ["request.created", "request.approval_given"]
    assert {"request.approved", "grant.activated", "grant.relinquished"} <= set(actions)

    # Policy as code: the auditor plans a change on a pull request, the administrator applies it on merge.
    plan = api(client_package, "policy_plan").sync_detailed(client=erin, body=models.PolicyPlanInput(policy=POLICY))
    planned = parsed(plan, 200, "PolicyPlan")
    assert planned.applied is False
    assert ("created", "reporting") in [(c.kind.value, c.role) for c in planned.changes]
    apply_body = models.PolicyApplyInput(policy=POLICY, otp=code_of(people["root"][0]))
    applied = parsed(api(client_package, "policy_apply").sync_detailed(client=root, body=apply_body), 200, "PolicyPlan")
    assert (applied.applied, applied.changed, applied.sha256) == (True, planned.changed, planned.sha256)
    wrong = api(client_package, "policy_plan").sync_detailed(
        client=erin, body=models.PolicyPlanInput(policy="roles: [")
    )
    assert parsed(wrong, 400, "Error").error == "invalid_policy"

    # Reconciliation and the break-glass queue answer in their models too.
    run = parsed(
        api(client_package, "reconciliation_run").sync_detailed(client=root),
        200,
        "ReconcileOutcome",
    )
    assert {tuple(r.roles) for r in run.reports} >= {("prod-db-admin",), ("reporting",)}
    reports = api(client_package, "reconciliation_list").sync_detailed(client=erin)
    assert len(parsed(reports, 200, "PaginatedTargetReportList").results) == len(run.reports)
    queue = api(client_package, "grants_awaiting_review").sync_detailed(client=erin)
    assert parsed(queue, 200, "PaginatedGrantList").results == []


POLICY = """\
roles:
  - slug: prod-db-admin
    name: Production database admin
    max_duration: 4h
    requires_mfa: true
    approval:
      stages:
        - approvers: {users: [carol]}
    target:
      connector: django_group
      config: {group: prod-db-admins}
  - slug: reporting
    name: Reporting database reader
    max_duration: 2h
    approval:
      stages:
        - approvers: {users: [carol]}
    target:
      connector: django_group
      config: {group: reporting-readers}
eligibility:
  - role: prod-db-admin
    users: [alice]
  - role: reporting
    users: [alice]
"""
