"""schemathesis against a live server: every operation, all checks, an authenticated token.

Runs with the integration suite (PostgreSQL). The budget (SCHEMATHESIS_MAX_EXAMPLES, default
25 per operation and phase) keeps it around a minute or two; the whole output is kept in
test-artifacts/schemathesis.txt.
"""

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.models import ApiToken
from accounts.tokens import token_create
from approvals import services as approvals
from broker.models import Channel
from grants import services as grants
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory
from tests.otp import authenticator

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
ARTIFACTS = ROOT / "test-artifacts"
CHECKS = "all"


def seed() -> str:
    """A small world the fuzzer can reach: ids 1..5, roles sandbox/deploy/db/glass, users alice/bob (and carol,
    whom the schema's example policy names)."""
    admin = UserFactory(username="st-admin", is_staff=True)
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    UserFactory(username="carol")
    authenticator(admin)
    sandbox = RoleFactory(slug="sandbox", auto_approve=True, requires_justification=False)
    deploy = RoleFactory(slug="deploy", max_duration=timedelta(hours=8))
    db = RoleFactory(slug="db", requires_mfa=True)
    for role in (deploy, db):
        StageFactory(role=role, users=[admin])
    for role in (sandbox, deploy, db):
        for user in (admin, alice, bob):
            EligibilityFactory(role=role, user=user)
    for user in (alice, bob):
        approvals.request_create(requester=user, role=deploy, justification="seed", via=Channel.CLI)
        auto = approvals.request_create(requester=user, role=sandbox, via=Channel.CLI)
        grants.grant_activate(grant_id=auto.grant.pk)
    approvals.request_create(requester=alice, role=db, justification="seed", via=Channel.CLI, mfa_at=timezone.now())
    # A break-glass grant awaiting its review (grants/{id}/review/).
    glass = RoleFactory(slug="glass", break_glass=True)
    EligibilityFactory(role=glass, user=alice)
    broken = approvals.request_create(
        requester=alice, role=glass, justification="seed", via=Channel.CLI, mfa_at=timezone.now()
    )
    grants.grant_activate(grant_id=broken.grant.pk)
    _, text = token_create(user=admin, scopes="read,request,approve,admin", via=Channel.CLI)
    # Out of reach of the generated ids: DELETE tokens/{id}/ must not revoke the fuzzer's own token.
    ApiToken.objects.filter(user=admin).update(id=987_654_321)
    return text


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_failure_with_all_checks(live_server, settings, report_figure):
    # The fuzzer sends missing and wrong credentials on purpose (ignored_auth); the limiter of
    # failed authentications has its own tests and would otherwise answer 429 to the rest.
    settings.API_AUTH_FAILURE_LIMIT = 10**9
    token = seed()
    max_examples = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25")
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file", str(CONFIG),
        "run", f"{live_server.url}/api/v1/schema/",
        "--checks", CHECKS,
        "--max-examples", max_examples,
        "--workers", "1",
        "--no-color",
    ]  # fmt: skip
    if os.environ.get("SCHEMATHESIS_SEED"):
        command += ["--seed", os.environ["SCHEMATHESIS_SEED"]]
    result = subprocess.run(
        command, cwd=ROOT, env={**os.environ, "SCHEMATHESIS_TOKEN": token}, capture_output=True, text=True, timeout=900
    )
    output = result.stdout + result.stderr
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "schemathesis.txt").write_text(output)
    cases = re.search(r"(\d+) generated, (.*)", output)
    seed_used = re.search(r"Seed: (\d+)", output)
    summary = (
        f"schemathesis: checks={CHECKS}, max-examples={max_examples}, "
        f"{cases.group(0) if cases else 'no cases?'} (SCHEMATHESIS_SEED={seed_used.group(1) if seed_used else '?'})"
    )
    report_figure(summary)
    assert result.returncode == 0, output[-6000:]
    assert cases and int(cases.group(1)) > 500, summary
    assert "failure" not in cases.group(2), summary
