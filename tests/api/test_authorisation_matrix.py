"""Every endpoint by every kind of caller → the expected status.

Callers: anonymous; alice the requester (owns the pending request and the active grant); bob,
another requester; carol, the approver of db-admin; erin, an auditor; root, an administrator
(token with the admin scope); and a token of the caller who would succeed, lacking the scope the
endpoint needs. Not visible is 404; visible but not allowed is 403.
"""

from dataclasses import dataclass, field

import pytest
from django.utils import timezone

from approvals import services as approvals
from approvals.models import AccessRequest
from broker.catalog import SECURITY_GROUP
from broker.models import Channel
from grants import services as grants
from grants.models import Grant
from tests.api.conftest import ALL
from tests.factories import GroupFactory, RoleFactory, UserFactory
from tests.otp import authenticator, code_of

ADMIN = (*ALL, "admin")
ACTORS = ("anonymous", "requester", "other", "approver", "auditor", "admin", "lacking")


@dataclass
class Row:
    name: str
    method: str
    path: str  # formatted with the world: {pending}, {grant}, {spare_token}, {glass}
    expected: dict[str, int]
    # Who holds the token lacking the scope, and the scopes it has.
    lacking: tuple[str, tuple[str, ...]]
    body: dict = field(default_factory=dict)
    otp: bool = False


def statuses(requester, other, approver, auditor, admin, lacking):
    return {
        "anonymous": 401,
        "requester": requester,
        "other": other,
        "approver": approver,
        "auditor": auditor,
        "admin": admin,
        "lacking": lacking,
    }


POLICY = """\
roles:
  - slug: matrix
    name: Matrix role
    max_duration: 1h
    approval: {stages: [{approvers: {users: [carol]}}]}
    target: {connector: django_group, config: {group: matrix-holders}}
eligibility:
  - {role: matrix, users: [alice]}
"""

ROWS = [
    Row("list roles", "get", "/api/v1/roles/", statuses(200, 200, 200, 200, 200, 403), ("alice", ("request",))),
    Row(
        "create request",
        "post",
        "/api/v1/requests/",
        statuses(201, 201, 403, 403, 403, 403),
        ("alice", ("read", "approve")),
        body={"role": "deploy", "duration_seconds": 3600, "justification": "deploy 1.2"},
    ),
    Row("list requests", "get", "/api/v1/requests/", statuses(200, 200, 200, 200, 200, 403), ("alice", ("request",))),
    Row(
        "read request",
        "get",
        "/api/v1/requests/{pending}/",
        statuses(200, 404, 200, 200, 200, 403),
        ("alice", ("request",)),
    ),
    Row(
        "approve request",
        "post",
        "/api/v1/requests/{pending}/approve/",
        statuses(403, 404, 200, 403, 403, 403),
        ("carol", ("read", "request")),
        body={"comment": "ok"},
    ),
    Row(
        "deny request",
        "post",
        "/api/v1/requests/{pending}/deny/",
        statuses(403, 404, 200, 403, 403, 403),
        ("carol", ("read", "request")),
        body={"comment": "not now"},
    ),
    Row(
        "cancel request",
        "post",
        "/api/v1/requests/{pending}/cancel/",
        statuses(200, 404, 403, 403, 403, 403),
        ("alice", ("read", "approve")),
    ),
    Row("list grants", "get", "/api/v1/grants/", statuses(200, 200, 200, 200, 200, 403), ("alice", ("request",))),
    Row(
        "read grant",
        "get",
        "/api/v1/grants/{grant}/",
        statuses(200, 404, 404, 200, 200, 403),
        ("alice", ("request",)),
    ),
    Row(
        "revoke grant",
        "post",
        "/api/v1/grants/{grant}/revoke/",
        statuses(200, 404, 404, 403, 200, 403),
        ("alice", ("read", "approve")),
        body={"reason": "done"},
    ),
    Row(
        "extend grant",
        "post",
        "/api/v1/grants/{grant}/extend/",
        statuses(201, 404, 404, 403, 403, 403),
        ("alice", ("read", "approve")),
        body={"duration_seconds": 600, "justification": "more time"},
    ),
    Row(
        "check yourself",
        "get",
        "/api/v1/check/?role=sandbox",
        statuses(200, 200, 200, 200, 200, 403),
        ("alice", ("request",)),
    ),
    Row(
        "check someone else",
        "get",
        "/api/v1/check/?user=alice&role=sandbox",
        statuses(200, 403, 403, 200, 200, 403),
        ("erin", ("request",)),
    ),
    Row(
        "report a risk signal",
        "post",
        "/api/v1/signals/",
        statuses(403, 403, 403, 403, 200, 403),
        ("root", ALL),
        body={"user": "alice", "event": "risk_high", "reason": "impossible travel"},
    ),
    Row("list tokens", "get", "/api/v1/tokens/", statuses(200, 200, 200, 200, 200, 403), ("alice", ("request",))),
    Row(
        "create token",
        "post",
        "/api/v1/tokens/",
        # the lacking token may not mint a token with a scope it lacks itself
        statuses(201, 201, 201, 201, 201, 403),
        ("alice", ("request",)),
        body={"scopes": ["read"], "name": "ci"},
        otp=True,
    ),
    Row(
        "revoke token",
        "delete",
        "/api/v1/tokens/{spare_token}/",
        # revoking only takes power away: any token of the owner may do it
        statuses(204, 404, 404, 404, 404, 204),
        ("alice", ("request",)),
    ),
    Row("read audit trail", "get", "/api/v1/audit/", statuses(403, 403, 403, 200, 200, 403), ("erin", ("request",))),
    Row(
        "export audit trail",
        "get",
        "/api/v1/audit/export/?format=jsonl",
        statuses(403, 403, 403, 200, 200, 403),
        ("erin", ("request",)),
    ),
    Row(
        "export audit trail (deprecated path)",
        "get",
        "/api/v1/audit/?format=jsonl",
        statuses(403, 403, 403, 200, 200, 403),
        ("erin", ("request",)),
    ),
    Row(
        "list grants awaiting review",
        "get",
        "/api/v1/grants/awaiting-review/",
        statuses(403, 403, 403, 200, 200, 403),
        ("erin", ("request",)),
    ),
    Row(
        "review break-glass grant",
        "post",
        "/api/v1/grants/{glass}/review/",
        # the holder sees it but reviews nothing; security with a read-only token lacks `approve`
        statuses(403, 404, 404, 403, 200, 403),
        ("frank", ("read",)),
        body={"note": "checked the incident"},
    ),
    Row(
        "list drift reports",
        "get",
        "/api/v1/reconciliation/",
        statuses(403, 403, 403, 200, 200, 403),
        ("erin", ("request",)),
    ),
    Row(
        "list unused eligibilities",
        "get",
        "/api/v1/eligibility/unused/",
        statuses(403, 403, 403, 200, 200, 403),
        ("erin", ("request",)),
    ),
    Row(
        "run reconciliation",
        "post",
        "/api/v1/reconciliation/run/",
        statuses(403, 403, 403, 403, 200, 403),
        ("root", ALL),
    ),
    Row(
        "plan policy",
        "post",
        "/api/v1/policy/plan/",
        statuses(403, 403, 403, 200, 200, 403),
        ("erin", ("request",)),
        body={"policy": POLICY},
    ),
    Row(
        "apply policy",
        "post",
        "/api/v1/policy/apply/",
        statuses(403, 403, 403, 403, 200, 403),
        ("root", ALL),
        body={"policy": POLICY},
        otp=True,
    ),
]


def break_glass_grant(world) -> Grant:
    """alice's active break-glass grant, awaiting its review."""
    role = RoleFactory(slug="glass", break_glass=True)
    role.eligibilities.create(user=world.alice)
    req = approvals.request_create(
        requester=world.alice, role=role, justification="INC-9", via=Channel.CLI, mfa_at=timezone.now()
    )
    return grants.grant_activate(grant_id=req.grant.pk)


def client_for(actor, row, world, bearer, anonymous):
    people = {
        "requester": world.alice,
        "other": world.bob,
        "approver": world.carol,
        "auditor": world.erin,
        "admin": world.root,
    }
    if actor == "anonymous":
        return anonymous, None
    if actor == "lacking":
        name, scopes = row.lacking
        if name == "frank":
            user = UserFactory(username="frank")
            user.groups.add(GroupFactory(name=SECURITY_GROUP))
        else:
            user = {"alice": world.alice, "carol": world.carol, "erin": world.erin, "root": world.root}[name]
        return bearer(user, scopes=scopes), user
    user = people[actor]
    return bearer(user, scopes=ADMIN if actor == "admin" else ALL), user


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.name.replace(" ", "-"))
def test_each_caller_gets_the_expected_status_from_each_endpoint(row, actor, world, bearer, anonymous):
    for person in (world.alice, world.bob, world.carol, world.erin, world.root):
        authenticator(person)
    spare = bearer(world.alice, scopes=("read",)).token
    glass = break_glass_grant(world) if "{glass}" in row.path else None
    path = row.path.format(
        pending=world.pending.pk, grant=world.grant.pk, spare_token=spare.pk, glass=glass.pk if glass else None
    )
    client, user = client_for(actor, row, world, bearer, anonymous)
    body = dict(row.body)
    if row.otp and user is not None:
        body["otp"] = code_of(user)
    response = getattr(client, row.method)(path, body, format="json") if row.method != "get" else client.get(path)

    assert response.status_code == row.expected[actor], (response.status_code, response.content[:300])
    if response.status_code >= 400:
        assert response["Content-Type"].startswith("application/json")
        assert set(response.json()) >= {"error", "detail"}


def test_requester_cannot_approve_own_request_through_the_api(world, bearer):
    authenticator(world.alice)
    alice = bearer(world.alice)
    response = alice.post(f"/api/v1/requests/{world.pending.pk}/approve/", {"otp": code_of(world.alice)}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "self_approval"
    world.pending.refresh_from_db()
    assert world.pending.status == "pending"


def test_requester_who_is_also_a_stage_approver_still_cannot_approve_own_request(world, bearer):
    world.db_admin.stages.get().users.add(world.alice)
    response = bearer(world.alice).post(f"/api/v1/requests/{world.pending.pk}/approve/", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "self_approval"


def test_auditor_reads_everything_and_changes_nothing(world, bearer):
    erin = bearer(world.erin)
    expires_at = world.grant.expires_at
    assert erin.get(f"/api/v1/requests/{world.pending.pk}/").json()["id"] == world.pending.pk
    assert erin.get(f"/api/v1/grants/{world.grant.pk}/").json()["id"] == world.grant.pk
    for path, body in [
        (f"/api/v1/requests/{world.pending.pk}/approve/", {}),
        (f"/api/v1/requests/{world.pending.pk}/deny/", {"comment": "no"}),
        (f"/api/v1/requests/{world.pending.pk}/cancel/", {}),
        (f"/api/v1/grants/{world.grant.pk}/revoke/", {"reason": "x"}),
        (f"/api/v1/grants/{world.grant.pk}/extend/", {"duration_seconds": 60}),
    ]:
        assert erin.post(path, body, format="json").status_code == 403, path
    world.pending.refresh_from_db()
    world.grant.refresh_from_db()
    assert (world.pending.status, world.pending.decisions.count()) == (AccessRequest.Status.PENDING, 0)
    assert (world.grant.status, world.grant.expires_at) == (Grant.Status.ACTIVE, expires_at)


def test_staff_powers_need_the_admin_scope_on_a_token(world, bearer):
    root_without_admin = bearer(world.root, scopes=ALL)
    assert root_without_admin.get(f"/api/v1/grants/{world.grant.pk}/").status_code == 404
    assert root_without_admin.get("/api/v1/audit/").status_code == 403
    assert bearer(world.root, scopes=ADMIN).get(f"/api/v1/grants/{world.grant.pk}/").status_code == 200
