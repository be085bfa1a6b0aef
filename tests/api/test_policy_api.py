"""Policy as code through the API: plan (a dry run, as JSON) and apply (administrators, a fresh second factor)."""

from textwrap import dedent

import pytest
from rest_framework.test import APIClient

from broker.models import AuditEvent, Role
from tests.api.conftest import ALL
from tests.otp import authenticator, code_of, sign_in_verified, wrong_code_of

pytestmark = pytest.mark.django_db

ADMIN = (*ALL, "admin")

POLICY = dedent(
    """\
    roles:
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
      - role: reporting
        users: [alice]
    """
)


@pytest.fixture
def root(world, bearer):
    authenticator(world.root)
    return bearer(world.root, scopes=ADMIN)


def plan(client, text=POLICY, **extra):
    return client.post("/api/v1/policy/plan/", {"policy": text, **extra}, format="json")


def apply(client, user, text=POLICY, **extra):
    body = {"policy": text, "otp": code_of(user), **extra}
    return client.post("/api/v1/policy/apply/", body, format="json")


def test_an_auditor_plans_a_policy_and_nothing_is_written(world, bearer):
    erin = bearer(world.erin, scopes=("read",))
    events = AuditEvent.objects.count()
    response = plan(erin)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["applied"], body["prune"], body["changed"]) == (False, False, 3)
    assert body["changes"][0] == {"kind": "created", "role": "reporting", "detail": "Reporting database reader"}
    assert {"kind": "updated", "role": "reporting", "detail": "eligible +alice"} in body["changes"]
    assert len(body["sha256"]) == 64
    assert not Role.objects.filter(slug="reporting").exists()
    assert AuditEvent.objects.count() == events


def test_the_plan_lists_the_roles_the_file_no_longer_has_and_what_prune_would_do(world, root):
    for role in (world.db_admin, world.sandbox, world.deploy):
        role.managed_by_policy = True
        role.save()
    kept = plan(root).json()["changes"]
    assert {"kind": "kept", "role": "sandbox", "detail": "not in the file; --prune retires it"} in kept
    pruned = plan(root, prune=True).json()
    assert {"kind": "retired", "role": "sandbox", "detail": "removed from the file"} in pruned["changes"]
    assert any(c["kind"] == "ending" and "alice" in c["detail"] for c in pruned["changes"])
    world.sandbox.refresh_from_db()
    assert world.sandbox.retired_at is None


def test_a_policy_with_errors_is_a_400_listing_each_error_with_its_line(world, root):
    response = plan(root, POLICY.replace("max_duration: 2h", "max_duration: 2 hours").replace("[alice]", "[nobody]"))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_policy"
    assert body["fields"]["policy"] == [
        "line 4: roles[0].max_duration: expected a duration such as 30m, 4h or 1h30m (units s, m, h, d), got '2 hours'",
        "line 13: eligibility[0].users[0]: no user 'nobody'",
    ]


def test_an_administrator_applies_a_policy_with_a_fresh_code_and_it_is_audited(world, root):
    response = apply(root, world.root)
    assert response.status_code == 200, response.json()
    assert (response.json()["applied"], response.json()["changed"]) == (True, 3)
    role = Role.objects.get(slug="reporting")
    assert role.managed_by_policy and role.eligibilities.get().user == world.alice
    event = AuditEvent.objects.get(action="policy.applied")
    assert (event.actor_name, event.channel, event.ip) == ("root", "api", "127.0.0.1")
    assert event.data["source"] == "api" and event.data["sha256"] == response.json()["sha256"]


def test_applying_the_same_file_again_changes_nothing_and_audits_nothing(world, root, clock):
    apply(root, world.root)
    clock.shift(30)
    again = apply(root, world.root)
    assert (again.status_code, again.json()["changed"]) == (200, 0)
    assert AuditEvent.objects.filter(action="policy.applied").count() == 1


def test_applying_needs_a_fresh_second_factor(world, root):
    response = root.post("/api/v1/policy/apply/", {"policy": POLICY}, format="json")
    assert (response.status_code, response.json()["error"]) == (403, "mfa_required")
    wrong = root.post("/api/v1/policy/apply/", {"policy": POLICY, "otp": wrong_code_of(world.root)}, format="json")
    assert (wrong.status_code, wrong.json()["error"]) == (403, "mfa_invalid")
    assert not Role.objects.filter(slug="reporting").exists()


def test_an_administrator_without_a_device_is_told_how_to_enrol(world, bearer):
    response = bearer(world.root, scopes=ADMIN).post("/api/v1/policy/apply/", {"policy": POLICY}, format="json")
    assert (response.status_code, response.json()["error"]) == (403, "mfa_not_enrolled")


def test_a_portal_session_that_just_stepped_up_applies_with_its_csrf_token(world):
    client = APIClient(enforce_csrf_checks=True)
    sign_in_verified(client, world.root)
    token = "k" * 32  # the CSRF cookie's secret, as the portal's pages set it
    client.cookies["csrftoken"] = token
    refused = client.post("/api/v1/policy/apply/", {"policy": POLICY}, format="json")
    assert refused.status_code == 403
    response = client.post("/api/v1/policy/apply/", {"policy": POLICY}, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize("who", ["auditor", "requester", "admin without the admin scope"])
def test_only_administrators_apply(world, bearer, who):
    user, scopes = {
        "auditor": (world.erin, ALL),
        "requester": (world.alice, ALL),
        "admin without the admin scope": (world.root, ALL),
    }[who]
    authenticator(user)
    response = bearer(user, scopes=scopes).post(
        "/api/v1/policy/apply/", {"policy": POLICY, "otp": code_of(user)}, format="json"
    )
    assert response.status_code == 403
    assert not Role.objects.filter(slug="reporting").exists()


def test_requesters_and_approvers_do_not_plan(world, bearer):
    for person in (world.alice, world.carol):
        assert plan(bearer(person)).status_code == 403


def test_prune_is_true_or_false_only(world, root):
    response = plan(root, prune="yes")
    assert response.status_code == 400 and "prune" in response.json()["fields"]


def test_a_policy_larger_than_other_bodies_is_read_up_to_a_mebibyte(world, root):
    padded = POLICY + "# " + "x" * (200 * 1024) + "\n"
    assert plan(root, padded).status_code == 200
    too_big = plan(root, POLICY + "# " + "x" * (1024 * 1024) + "\n")
    assert (too_big.status_code, too_big.json()["error"]) == (413, "payload_too_large")


def test_a_policy_with_a_control_character_is_a_400_not_a_500(world, root):
    response = plan(root, POLICY.replace("Reporting", "Repor\x10ting"))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_policy")
    assert response.json()["fields"]["policy"] == ["line 3: not valid YAML: character 0x0010 is not allowed"]
