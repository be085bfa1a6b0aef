"""The ldap_group connector against a real OpenLDAP server (Debian's slapd, started by the test)."""

import uuid
from datetime import timedelta

import ldap3
import pytest

from approvals import services as approvals
from broker.models import AuditEvent, Channel
from grants import services
from grants.connectors import AccessEvent, PermanentConnectorError, TargetUnavailable
from grants.connectors.ldap_group import LdapGroupConnector
from grants.models import Grant
from grants.reconcile import reconcile
from tests.factories import EligibilityFactory, RoleFactory, UserFactory
from tests.integration.conftest import wait_for
from tests.slapd import ADMIN, BASE, SLAPD, Slapd

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(SLAPD is None, reason="slapd is not installed (apt-get install slapd ldap-utils; .ci/run does)"),
]

EVENT = AccessEvent(type="grant.activated", key="k", username="alice", role="admins")


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    with server.admin() as conn:
        conn.add(BASE, ["dcObject", "organization"], {"dc": "example", "o": "Example"})
        for ou in ("people", "groups"):
            conn.add(f"ou={ou},{BASE}", ["organizationalUnit"], {"ou": ou})
        for uid in ("alice", "bob", "x,y"):
            conn.add(
                f"uid={ldap3.utils.dn.escape_rdn(uid)},ou=people,{BASE}",
                ["inetOrgPerson"],
                {"cn": uid, "sn": uid, "uid": uid},
            )
    yield server
    server.stop()


@pytest.fixture
def group(slapd, monkeypatch):
    """A fresh groupOfNames whose placeholder member is the admin (groupOfNames needs one)."""
    monkeypatch.setenv("LDAP_PW", slapd.password)
    dn = f"cn=g-{uuid.uuid4().hex[:8]},ou=groups,{BASE}"
    with slapd.admin() as conn:
        conn.add(dn, ["groupOfNames"], {"member": [ADMIN]})
    return dn


def config(slapd, group, **more):
    return {
        "url": slapd.url,
        "allow_plain": True,
        "bind_dn": ADMIN,
        "password_env": "LDAP_PW",
        "group_dn": group,
        "user_dn": f"uid={{username}},ou=people,{BASE}",
        "timeout": "2s",
        **more,
    }


def members(slapd, group) -> set[str]:
    with slapd.admin() as conn:
        conn.search(group, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["member"])
        return {m.lower() for m in conn.response[0]["attributes"]["member"]}


ALICE = f"uid=alice,ou=people,{BASE}"


def test_a_member_is_added_read_back_and_removed(slapd, group):
    alice = UserFactory(username="alice")
    connector = LdapGroupConnector(config(slapd, group))
    connector.grant(alice, EVENT)
    connector.grant(alice, EVENT)  # idempotent
    assert ALICE in members(slapd, group)
    assert connector.is_granted(alice) is True
    connector.revoke(alice, EVENT)
    connector.revoke(alice, EVENT)  # idempotent
    assert ALICE not in members(slapd, group)
    assert connector.is_granted(alice) is False


def test_a_grant_lifecycle_adds_and_removes_the_member(slapd, group):
    alice = UserFactory(username="alice")
    role = RoleFactory(slug="admins", auto_approve=True, connector="ldap_group", connector_config=config(slapd, group))
    EligibilityFactory(role=role, user=alice)
    grant = approvals.request_create(requester=alice, role=role, justification="x", via=Channel.API).grant
    grant = services.grant_activate(grant_id=grant.pk)
    assert grant.status == "active" and ALICE in members(slapd, group)
    grant = services.grant_expire(grant_id=grant.pk, now=grant.expires_at)
    assert grant.status == "expired" and ALICE not in members(slapd, group)


def test_a_user_missing_from_the_directory_is_a_clear_error(slapd, group):
    carol = UserFactory(username="carol")
    with pytest.raises(PermanentConnectorError, match="no entry for 'carol' in the directory"):
        LdapGroupConnector(config(slapd, group)).grant(carol, EVENT)
    LdapGroupConnector(config(slapd, group)).revoke(carol, EVENT)  # nothing to remove is a success


def test_a_user_missing_from_the_directory_fails_the_activation_at_once(slapd, group):
    carol = UserFactory(username="carol")
    role = RoleFactory(slug="admins", auto_approve=True, connector="ldap_group", connector_config=config(slapd, group))
    EligibilityFactory(role=role, user=carol)
    grant = approvals.request_create(requester=carol, role=role, justification="x", via=Channel.API).grant
    assert services.grant_activate(grant_id=grant.pk).status == "failed"
    assert "no entry for 'carol'" in AuditEvent.objects.get(action="grant.connector_failed").data["error"]


def test_holders_feed_reconciliation(slapd, group):
    UserFactory(username="alice")
    UserFactory(username="bob")
    RoleFactory(slug="admins", connector="ldap_group", connector_config=config(slapd, group))
    with slapd.admin() as conn:  # bob was added by hand: standing access
        conn.modify(group, {"member": [(ldap3.MODIFY_ADD, [f"uid=bob,ou=people,{BASE}"])]})
    assert LdapGroupConnector(config(slapd, group)).holders() == {"bob"}
    assert reconcile().detected == ["admins/bob"]


def test_an_authoritative_target_loses_members_that_hold_no_grant(slapd, group):
    UserFactory(username="bob")
    RoleFactory(slug="admins", connector="ldap_group", connector_config=config(slapd, group), authoritative=True)
    with slapd.admin() as conn:
        conn.modify(group, {"member": [(ldap3.MODIFY_ADD, [f"uid=bob,ou=people,{BASE}"])]})
    assert reconcile().removed == ["admins/bob"]
    assert f"uid=bob,ou=people,{BASE}" not in members(slapd, group)


def test_a_username_with_dn_characters_is_escaped_and_read_back(slapd, group):
    odd = UserFactory(username="x,y")
    connector = LdapGroupConnector(config(slapd, group))
    connector.grant(odd, EVENT)
    assert connector.is_granted(odd) is True
    assert connector.holders() == {"x,y"}


def test_the_user_search_finds_the_dn_and_a_filter_injection_finds_nobody(slapd, group):
    search = {"base": f"ou=people,{BASE}", "filter": "(uid={username})"}
    conf = {k: v for k, v in config(slapd, group).items() if k != "user_dn"} | {"user_search": search}
    connector = LdapGroupConnector(conf)
    connector.grant(UserFactory(username="bob"), EVENT)
    assert f"uid=bob,ou=people,{BASE}" in members(slapd, group)
    assert connector.holders() == {"bob"}
    with pytest.raises(PermanentConnectorError, match="no entry for"):
        connector.grant(UserFactory(username="*)(uid=*"), EVENT)


def test_start_tls_with_the_servers_ca_works(slapd, group):
    alice = UserFactory(username="alice")
    conf = config(slapd, group, start_tls=True, ca_file=str(slapd.ca_file))
    del conf["allow_plain"]
    LdapGroupConnector(conf).grant(alice, EVENT)
    assert ALICE in members(slapd, group)


def test_ldaps_with_the_servers_ca_works(slapd, group):
    alice = UserFactory(username="alice")
    conf = config(slapd, group, url=slapd.tls_url, ca_file=str(slapd.ca_file))
    del conf["allow_plain"]
    LdapGroupConnector(conf).grant(alice, EVENT)
    assert ALICE in members(slapd, group)


@pytest.mark.parametrize("tls", ["start_tls", "ldaps"])
def test_a_server_certificate_from_another_ca_is_refused(slapd, group, tls):
    alice = UserFactory(username="alice")
    conf = config(slapd, group, ca_file=str(slapd.other_ca_file))
    del conf["allow_plain"]
    if tls == "ldaps":
        conf["url"] = slapd.tls_url
    else:
        conf["start_tls"] = True
    with pytest.raises((PermanentConnectorError, TargetUnavailable), match=r"(?i)certificate|TLS|socket ssl"):
        LdapGroupConnector(conf).grant(alice, EVENT)
    assert ALICE not in members(slapd, group)


def test_a_wrong_bind_password_is_a_permanent_error(slapd, group, monkeypatch):
    monkeypatch.setenv("LDAP_PW", "wrong")
    with pytest.raises(PermanentConnectorError, match="cannot bind"):
        LdapGroupConnector(config(slapd, group)).grant(UserFactory(username="alice"), EVENT)


def test_apply_policy_reports_a_missing_group(slapd, group):
    from broker import policy

    text = (
        "roles:\n  - slug: admins\n    name: Admins\n    max_duration: 1h\n    approval: {auto_approve: true}\n"
        "    target:\n      connector: ldap_group\n      config:\n"
        f"        url: {slapd.url}\n        allow_plain: true\n        bind_dn: '{ADMIN}'\n        password_env: LDAP_PW\n"
        f"        group_dn: 'cn=nope,ou=groups,{BASE}'\n        user_dn: 'uid={{username}},ou=people,{BASE}'\n"
    )
    warnings = [str(c) for c in policy.apply(policy.load(text)) if c.kind == "warning"]
    assert len(warnings) == 1 and "does not exist in the directory" in warnings[0]


def test_a_real_worker_adds_and_removes_the_member_on_time(slapd, group, start_worker, report_figure):
    alice = UserFactory(username="alice")
    role = RoleFactory(slug="admins", auto_approve=True, connector="ldap_group", connector_config=config(slapd, group))
    EligibilityFactory(role=role, user=alice)
    start_worker()
    grant = approvals.request_create(
        requester=alice, role=role, duration=timedelta(seconds=4), justification="x", via=Channel.API
    ).grant
    wait_for(lambda: Grant.objects.get(pk=grant.pk).status == "active", timeout=10, what="activation")
    assert ALICE in members(slapd, group)
    wait_for(lambda: Grant.objects.get(pk=grant.pk).status == "expired", timeout=15, what="removal")
    grant.refresh_from_db()
    lag = (grant.ended_at - grant.expires_at).total_seconds()
    report_figure(f"revocation lag, ldap_group (real worker, ETA task): {lag:.3f} s")
    assert 0 <= lag < 2
    assert ALICE not in members(slapd, group)
