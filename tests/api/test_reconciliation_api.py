"""Reconciliation through the API: the latest drift report per target, and a run on demand (admin scope)."""

import pytest
from django.contrib.auth.models import Group

from broker.models import AuditEvent
from tests.api.conftest import ALL

pytestmark = pytest.mark.django_db

ADMIN = (*ALL, "admin")


def drift(world):
    """bob in the sandbox target's group without a grant."""
    world.bob.groups.add(Group.objects.get(name=world.sandbox.connector_config["group"]))


def test_an_administrator_runs_a_reconciliation_and_gets_every_target_s_report(world, bearer):
    drift(world)
    response = bearer(world.root, scopes=ADMIN).post("/api/v1/reconciliation/run/", {}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["detected"] == ["sandbox/bob"] and body["errors"] == []
    sandbox = next(r for r in body["reports"] if r["roles"] == ["sandbox"])
    assert (sandbox["outcome"], sandbox["detected"], sandbox["holders"], sandbox["authoritative"]) == (
        "drift",
        ["bob"],
        2,
        False,
    )
    event = AuditEvent.objects.get(action="reconcile.run")
    assert (event.actor_name, event.channel, event.data["detected"]) == ("root", "api", ["sandbox/bob"])


def test_auditors_read_the_latest_report_of_each_target(world, bearer):
    drift(world)
    bearer(world.root, scopes=ADMIN).post("/api/v1/reconciliation/run/", {}, format="json")
    body = bearer(world.erin).get("/api/v1/reconciliation/").json()
    assert {tuple(r["roles"]) for r in body["results"]} == {("db-admin",), ("deploy",), ("sandbox",)}
    drifting = bearer(world.erin).get("/api/v1/reconciliation/?outcome=drift").json()["results"]
    assert [r["detected"] for r in drifting] == [["bob"]]


def test_the_periodic_run_fills_the_same_reports(world, bearer):
    from grants.tasks import reconcile

    drift(world)
    reconcile()
    [report] = bearer(world.erin).get("/api/v1/reconciliation/?outcome=drift").json()["results"]
    assert report["detected"] == ["bob"]
    assert not AuditEvent.objects.filter(action="reconcile.run").exists()  # only runs someone asked for


def test_only_administrators_with_the_admin_scope_run_a_reconciliation(world, bearer):
    for client in (bearer(world.erin), bearer(world.alice), bearer(world.root, scopes=ALL)):
        response = client.post("/api/v1/reconciliation/run/", {}, format="json")
        assert response.status_code == 403, response.json()
    assert not AuditEvent.objects.filter(action="reconcile.run").exists()


def test_requesters_and_approvers_do_not_read_the_reports(world, bearer):
    for person in (world.alice, world.carol):
        assert bearer(person).get("/api/v1/reconciliation/").status_code == 403


def test_a_run_takes_no_body_fields(world, bearer):
    response = bearer(world.root, scopes=ADMIN).post("/api/v1/reconciliation/run/", {"dry": True}, format="json")
    assert response.status_code == 400
