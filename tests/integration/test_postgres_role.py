"""The postgres_role connector against the machine's PostgreSQL: real roles, real logins, real sessions."""

import socket
import time
from datetime import timedelta

import psycopg
import pytest
from django.core.management import call_command

from approvals import services as approvals
from broker import policy
from broker.models import AuditEvent, Channel
from grants import services
from grants.connectors import AccessEvent, PermanentConnectorError, TargetUnavailable
from grants.connectors.postgres_role import PostgresRoleConnector
from grants.models import Grant
from grants.reconcile import reconcile
from tests.factories import EligibilityFactory, RoleFactory, UserFactory
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

EVENT = AccessEvent(type="grant.activated", key="k", username="alice", role="reporting")


def config(target, **more):
    return {"dsn_env": "TARGET_PG_DSN", "role": target.role, "login": f"{target.prefix}_{{username}}", **more}


@pytest.fixture
def alice(pg_target):
    user = UserFactory(username="alice")
    pg_target.create_login(f"{pg_target.prefix}_alice")
    return user


@pytest.fixture
def reporting(pg_target, alice):
    role = RoleFactory(
        slug="reporting", auto_approve=True, connector="postgres_role", connector_config=config(pg_target)
    )
    EligibilityFactory(role=role, user=alice)
    return role


def activate(user, role, duration=timedelta(minutes=5)) -> Grant:
    grant = approvals.request_create(
        requester=user, role=role, duration=duration, justification="x", via=Channel.API
    ).grant
    return services.grant_activate(grant_id=grant.pk)


def test_an_active_grant_lets_the_login_set_role_and_expiry_ends_its_open_session(pg_target, alice, reporting):
    login = f"{pg_target.prefix}_alice"
    grant = activate(alice, reporting)
    assert grant.status == "active"
    session = pg_target.connect_as(login)
    session.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(pg_target.role)))
    assert session.execute("SELECT current_user").fetchone()[0] == pg_target.role

    grant = services.grant_expire(grant_id=grant.pk, now=grant.expires_at)
    assert grant.status == "expired"
    assert not pg_target.is_member(login)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")


def test_a_login_that_cannot_set_role_before_the_grant(pg_target, alice, reporting):
    session = pg_target.connect_as(f"{pg_target.prefix}_alice")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        session.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(pg_target.role)))
    session.close()


def test_revoking_a_role_the_login_no_longer_holds_is_a_success(pg_target, alice, reporting):
    login = f"{pg_target.prefix}_alice"
    grant = activate(alice, reporting)
    pg_target.execute("REVOKE {} FROM {}", pg_target.role, login)  # someone took it away by hand
    grant = services.grant_relinquish(grant_id=grant.pk, user=alice, via=Channel.API)
    assert grant.status == "revoked"
    PostgresRoleConnector(config(pg_target)).revoke(alice, EVENT)  # and once more


def test_an_identifier_injection_in_the_username_is_only_a_strange_name(pg_target):
    evil = 'x"; DROP ROLE postgres; --'
    user = UserFactory(username=evil)
    pg_target.create_login(evil)
    connector = PostgresRoleConnector(config(pg_target, login="{username}"))
    connector.grant(user, EVENT)
    assert pg_target.is_member(evil)
    assert connector.holders() == {evil}
    connector.revoke(user, EVENT)
    assert not pg_target.is_member(evil)
    assert pg_target.execute("SELECT 1 FROM pg_roles WHERE rolname = 'postgres'") == [(1,)]


def test_an_injection_in_the_target_role_name_is_quoted_too(pg_target, alice):
    connector = PostgresRoleConnector(config(pg_target, role='r"; DROP ROLE postgres; --'))
    with pytest.raises(PermanentConnectorError, match="does not exist on the target server"):
        connector.grant(alice, EVENT)
    assert pg_target.execute("SELECT 1 FROM pg_roles WHERE rolname = 'postgres'") == [(1,)]


def test_a_missing_target_role_fails_the_activation_at_once_with_the_reason(pg_target, alice, reporting):
    reporting.connector_config = config(pg_target, role=f"{pg_target.prefix}_nope")
    reporting.save()
    grant = activate(alice, reporting)
    assert grant.status == "failed"
    failure = AuditEvent.objects.get(action="grant.connector_failed", target_id=str(grant.pk))
    assert (failure.data["attempt"], failure.data["final"]) == (1, True)
    assert f"role '{pg_target.prefix}_nope' does not exist on the target server" in failure.data["error"]


def test_a_user_without_a_login_on_the_target_is_a_clear_error(pg_target):
    bob = UserFactory(username="bob")
    with pytest.raises(
        PermanentConnectorError, match=f"no login '{pg_target.prefix}_bob' on the target server for bob"
    ):
        PostgresRoleConnector(config(pg_target)).grant(bob, EVENT)


def test_a_per_user_mapping_names_the_login(pg_target):
    bob = UserFactory(username="bob")
    pg_target.create_login(f"{pg_target.prefix}_robert")
    connector = PostgresRoleConnector(config(pg_target, logins={"bob": f"{pg_target.prefix}_robert"}))
    connector.grant(bob, EVENT)
    assert pg_target.is_member(f"{pg_target.prefix}_robert")
    assert connector.holders() == {"bob"}


def test_holders_feed_reconciliation(pg_target, alice, reporting):
    pg_target.execute("GRANT {} TO {}", pg_target.role, f"{pg_target.prefix}_alice")  # standing access by hand
    report = reconcile()
    assert report.detected == ["reporting/alice"]


def test_apply_policy_reports_a_target_role_missing_on_a_reachable_server(pg_target, capsys):
    text = f"""
roles:
  - slug: reporting
    name: Reporting
    max_duration: 1h
    approval: {{auto_approve: true}}
    target:
      connector: postgres_role
      config: {{dsn_env: TARGET_PG_DSN, role: {pg_target.prefix}_missing}}
"""
    changes = policy.apply(policy.load(text))
    warnings = [str(c) for c in changes if c.kind == "warning"]
    assert any(f"role '{pg_target.prefix}_missing' does not exist on the target server" in w for w in warnings), (
        warnings
    )


def test_apply_policy_says_when_it_could_not_check_the_target(monkeypatch):
    monkeypatch.delenv("UNSET_TARGET_DSN", raising=False)
    text = """
roles:
  - slug: reporting
    name: Reporting
    max_duration: 1h
    approval: {auto_approve: true}
    target:
      connector: postgres_role
      config: {dsn_env: UNSET_TARGET_DSN, role: reporting}
"""
    warnings = [str(c) for c in policy.apply(policy.load(text)) if c.kind == "warning"]
    assert warnings == [
        "warning   reporting: target PostgreSQL role 'reporting' (server from UNSET_TARGET_DSN): "
        "not checked: the environment variable UNSET_TARGET_DSN (dsn_env) is not set"
    ]


def test_apply_policy_command_prints_the_warning(pg_target, tmp_path, capsys):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "roles:\n  - slug: reporting\n    name: Reporting\n    max_duration: 1h\n    approval: {auto_approve: true}\n"
        f"    target: {{connector: postgres_role, config: {{dsn_env: TARGET_PG_DSN, role: {pg_target.prefix}_gone}}}}\n"
    )
    call_command("apply_policy", str(path))
    assert f"role '{pg_target.prefix}_gone' does not exist" in capsys.readouterr().out


def test_a_server_that_never_answers_is_cut_off_by_the_timeout(monkeypatch, alice):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections and never says a word
    host, port = silent.getsockname()
    monkeypatch.setenv("SILENT_DSN", f"host={host} port={port} dbname=x user=x")
    connector = PostgresRoleConnector({"dsn_env": "SILENT_DSN", "role": "r", "timeout": "2s"})
    started = time.monotonic()
    with pytest.raises(TargetUnavailable, match="cannot connect"):
        connector.grant(alice, EVENT)
    assert time.monotonic() - started < 5
    silent.close()


def test_a_real_worker_opens_and_closes_the_role_on_time(pg_target, alice, reporting, start_worker, report_figure):
    start_worker()
    login = f"{pg_target.prefix}_alice"
    req = approvals.request_create(
        requester=alice, role=reporting, duration=timedelta(seconds=4), justification="x", via=Channel.API
    )
    grant = req.grant
    wait_for(lambda: Grant.objects.get(pk=grant.pk).status == "active", timeout=10, what="activation")
    session = pg_target.connect_as(login)
    session.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(pg_target.role)))
    wait_for(lambda: Grant.objects.get(pk=grant.pk).status == "expired", timeout=15, what="removal")
    grant.refresh_from_db()
    lag = (grant.ended_at - grant.expires_at).total_seconds()
    report_figure(f"revocation lag, postgres_role (real worker, ETA task, session ended): {lag:.3f} s")
    assert 0 <= lag < 2
    assert not pg_target.is_member(login)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")


def test_two_grants_on_one_database_role_ended_at_once_leave_no_access(pg_target, alice, report_figure):
    from tests.integration.test_races import run_together

    first = RoleFactory(
        slug="reporting-a", auto_approve=True, connector="postgres_role", connector_config=config(pg_target)
    )
    second = RoleFactory(
        slug="reporting-b", auto_approve=True, connector="postgres_role", connector_config=config(pg_target)
    )
    for role in (first, second):
        EligibilityFactory(role=role, user=alice)
    login = f"{pg_target.prefix}_alice"
    for _ in range(3):
        a, b = activate(alice, first), activate(alice, second)
        assert pg_target.is_member(login)
        run_together(
            lambda a=a: services.grant_relinquish(grant_id=a.pk, user=alice, via=Channel.API),
            lambda b=b: services.grant_relinquish(grant_id=b.pk, user=alice, via=Channel.API),
        )
        assert set(Grant.objects.filter(pk__in=[a.pk, b.pk]).values_list("status", flat=True)) == {"revoked"}
        assert not pg_target.is_member(login), "both grants ended, and the database role stayed"


def test_the_connection_is_never_left_open_by_a_failed_call(pg_target, alice):
    connector = PostgresRoleConnector(config(pg_target, role=f"{pg_target.prefix}_nope"))
    before = pg_target.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'access-broker'")
    for _ in range(3):
        with pytest.raises(PermanentConnectorError):
            connector.grant(alice, EVENT)
    after = pg_target.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'access-broker'")
    assert after == before
