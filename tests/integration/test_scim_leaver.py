"""A SCIM leaver call ends a live grant in the target within seconds, with a real worker on PostgreSQL
and Redis whose sweepers only run every 10 minutes: only the reaction queued on commit can act."""

import json
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from approvals import services as approvals
from broker import audit
from broker.models import AuditEvent, Channel
from grants.models import Grant
from tests.factories import EligibilityFactory, RoleFactory
from tests.integration.conftest import Worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "scim-token-for-integration-tests-0123456789"


@pytest.fixture
def slow_sweeper_worker(transactional_db, tmp_path):
    w = Worker(tmp_path, sweep_interval="10m")
    w.start()
    yield w
    w.stop()


def scim(method, path, body=None):
    return getattr(Client(), method)(
        f"/scim/v2/{path}",
        json.dumps(body) if body is not None else None,
        content_type="application/scim+json",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


@pytest.mark.parametrize("leaver_call", ["patch_active_false", "delete"])
def test_a_scim_leaver_call_ends_the_live_grant_in_the_target_within_seconds(
    slow_sweeper_worker, settings, report_figure, leaver_call
):
    settings.SCIM_TOKEN = TOKEN
    settings.IDP_MANAGED_GROUP_PREFIX = "idp-"
    created = scim("post", "Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "leo"})
    assert created.status_code == 201, created.content
    uid = created.json()["id"]
    group = scim("post", "Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                    "displayName": "idp-dba", "members": [{"value": uid}]})  # fmt: skip
    assert group.status_code == 201, group.content
    role = RoleFactory(slug="db-admin", auto_approve=True, connector_config={"group": "db-admins"})
    EligibilityFactory(role=role, group=Group.objects.get(name="idp-dba"))
    leo = Group.objects.get(name="idp-dba").user_set.get()
    grant = approvals.request_create(
        requester=leo, role=role, duration=timedelta(hours=1), justification="INC-3", via=Channel.API
    ).grant
    wait_for(lambda: Grant.objects.get(pk=grant.pk).status == "active", timeout=15, what="activation by the worker")
    assert leo.groups.filter(name="db-admins").exists()

    called_at, started = timezone.now(), time.monotonic()
    if leaver_call == "delete":
        response = scim("delete", f"Users/{uid}")
        assert response.status_code == 204
    else:
        response = scim("patch", f"Users/{uid}", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                                  "Operations": [{"op": "replace", "path": "active", "value": False}]})  # fmt: skip
        assert response.status_code == 200, response.content
    answered = time.monotonic() - started
    wait_for(lambda: not leo.groups.filter(name="db-admins").exists(), timeout=10, what="removal from the target")
    seen = time.monotonic() - started
    grant = Grant.objects.get(pk=grant.pk)
    lag = (grant.ended_at - called_at).total_seconds()
    report_figure(
        f"SCIM leaver ({leaver_call}) -> grant ended in the target (real worker): {lag:.3f} s after the call "
        f"(SCIM answered in {answered:.3f} s; removal seen by the test after {seen:.3f} s)"
    )
    assert (grant.status, grant.end_reason) == ("revoked", "eligibility_lost")
    assert lag < 10
    assert AuditEvent.objects.get(action="user.deactivated", subject="leo").channel == "scim"
    assert "approvals.tasks.enforce_eligibility" in slow_sweeper_worker.logs()
    assert audit.verify().ok
