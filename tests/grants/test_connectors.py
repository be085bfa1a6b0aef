"""Connector configs as a policy file states them, and the registry a deployment extends."""

from importlib.metadata import EntryPoint

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from broker.policy import PolicyInvalid, load
from grants import connectors
from grants.connectors import REGISTRY
from grants.connectors.base import Connector
from grants.connectors.django_group import DjangoGroupConnector
from grants.connectors.ldap_group import LdapGroupConnector, dn_value
from grants.connectors.postgres_role import PostgresRoleConnector
from grants.connectors.webhook import WebhookConnector

pytestmark = pytest.mark.django_db


def errors_of(connector: str, config: str) -> list[str]:
    text = (
        "roles:\n"
        "  - slug: r\n"
        "    name: R\n"
        "    max_duration: 1h\n"
        "    approval: {auto_approve: true}\n"
        "    target:\n"
        f"      connector: {connector}\n"
        "      config:\n" + "".join(f"        {line}\n" for line in config.strip().splitlines())
    )
    with pytest.raises(PolicyInvalid) as caught:
        load(text)
    return [str(e) for e in caught.value.errors]


def test_a_secret_written_in_the_policy_file_is_refused_where_it_is():
    assert errors_of("postgres_role", "role: reporting\ndsn: postgresql://u:hunter2@db/x") == [
        "line 10: roles[0].target.config.dsn: secrets never go in the policy file: "
        "name an environment variable (dsn_env) or a file (dsn_file)"
    ]


def test_every_problem_of_a_postgres_role_config_is_named_on_its_line():
    assert errors_of(
        "postgres_role", "dsn_env: lower-case\nlogin: app_user\nlogins: {bob: ''}\ntimeout: 1m\ncolour: red"
    ) == [
        "line 9: roles[0].target.config: role is required",
        "line 9: roles[0].target.config.dsn_env: must be an environment variable's name such as TARGET_SECRET, got 'lower-case'",
        "line 10: roles[0].target.config.login: must contain {username} exactly once, such as 'app_{username}', got 'app_user'",
        "line 11: roles[0].target.config.logins.bob: must be the name of a login on the target server, got ''",
        "line 12: roles[0].target.config.timeout: at most 30s: a connector call holds a grant's lock",
        "line 13: roles[0].target.config.colour: unknown key (expected one of: dsn, dsn_env, dsn_file, login, logins, "
        "role, terminate_sessions, timeout)",
    ]


def test_a_role_name_longer_than_postgres_allows_is_refused():
    assert errors_of("postgres_role", f"dsn_env: DB\nrole: {'r' * 64}") == [
        "line 10: roles[0].target.config.role: at most 63 bytes (PostgreSQL truncates longer names)"
    ]


def test_plain_ldap_needs_to_be_asked_for():
    errors = errors_of(
        "ldap_group",
        "url: ldap://ldap.example.com\nbind_dn: cn=broker,dc=example,dc=org\npassword_env: LDAP_PW\n"
        "group_dn: cn=admins,ou=groups,dc=example,dc=org\nuser_dn: uid={username},ou=people,dc=example,dc=org",
    )
    assert errors == [
        "line 9: roles[0].target.config.url: plain LDAP sends the password in clear: "
        "use ldaps://, start_tls: true, or allow_plain: true"
    ]


def test_an_ldap_config_names_each_mistake():
    errors = errors_of(
        "ldap_group",
        "url: ldaps://ldap.example.com\nstart_tls: true\nbind_dn: not a dn\npassword: hunter2\n"
        "group_dn: cn=admins,dc=example,dc=org\nmember_attribute: members\n"
        "user_search: {base: 'ou=people,dc=example,dc=org', filter: '(uid=alice)'}",
    )
    assert errors == [
        "line 10: roles[0].target.config.start_tls: ldaps:// is TLS already; StartTLS is for ldap:// URLs",
        "line 11: roles[0].target.config.bind_dn: is not a valid DN: 'not a dn'",
        "line 12: roles[0].target.config.password: secrets never go in the policy file: "
        "name an environment variable (password_env) or a file (password_file)",
        "line 14: roles[0].target.config.member_attribute: must be member or uniqueMember, got 'members'",
        "line 15: roles[0].target.config.user_search.filter: must be a filter with {username}, such as (uid={username}), "
        "got '(uid=alice)'",
    ]


def test_a_webhook_must_use_https_beyond_this_machine():
    assert errors_of("webhook", "url: http://hooks.example.com/x\nsecret_env: HOOK") == [
        "line 9: roles[0].target.config.url: must be https:// (plain http only to this machine, or with allow_http: true)"
    ]


def test_a_webhook_url_carries_no_credentials_and_needs_a_secret():
    assert errors_of("webhook", "url: https://user:pw@hooks.example.com/x") == [
        "line 9: roles[0].target.config: secret_env (an environment variable's name) or secret_file (a path) is required",
        "line 9: roles[0].target.config.url: must not carry credentials: the signature authenticates the broker",
    ]


def test_valid_configs_of_every_connector_load():
    for connector, config in [
        ("django_group", "group: g"),
        ("postgres_role", "dsn_env: DB\nrole: reporting\nlogin: app_{username}\nlogins: {bob: robert}"),
        (
            "ldap_group",
            "url: ldap://ldap\nstart_tls: true\nbind_dn: cn=b,dc=x\npassword_file: /run/secrets/ldap\n"
            "group_dn: cn=g,dc=x\nuser_search: {base: 'dc=x', filter: '(sAMAccountName={username})'}",
        ),
        (
            "webhook",
            "url: https://hooks.example.com/x\nsecret_file: /run/secrets/hook\nstatus_url: https://hooks.example.com/s",
        ),
    ]:
        text = (
            "roles:\n  - slug: r\n    name: R\n    max_duration: 1h\n    approval: {auto_approve: true}\n"
            f"    target:\n      connector: {connector}\n      config:\n"
            + "".join(f"        {line}\n" for line in config.splitlines())
        )
        assert load(text).roles[0].target.connector == connector


def test_roles_on_one_database_role_share_one_piece_of_access_whatever_their_timeouts():
    one = PostgresRoleConnector({"dsn_env": "DB", "role": "r", "timeout": "2s"})
    other = PostgresRoleConnector({"dsn_env": "DB", "role": "r", "login": "x_{username}"})
    assert one.target_key() == other.target_key()
    assert one.target_key() != PostgresRoleConnector({"dsn_env": "DB", "role": "s"}).target_key()


def test_the_login_follows_the_rule_or_the_mapping(django_user_model):
    connector = PostgresRoleConnector(
        {"dsn_env": "DB", "role": "r", "login": "app_{username}", "logins": {"bob": "rob"}}
    )
    assert connector.login_of(django_user_model(username="alice")) == "app_alice"
    assert connector.login_of(django_user_model(username="bob")) == "rob"
    assert connector._username_of("app_alice") == "alice"
    assert connector._username_of("rob") == "bob"
    assert connector._username_of("postgres") is None


def test_ldap_usernames_are_escaped_in_a_dn():
    assert dn_value("x,ou=admins") == "x\\,ou\\=admins"
    assert dn_value("#hash") == "\\#hash"
    connector = LdapGroupConnector(
        {"url": "ldaps://l", "bind_dn": "cn=b", "group_dn": "cn=g", "user_dn": "uid={username},ou=People,dc=x"}
    )
    assert connector._username_of(None, "UID=x\\,y,ou=people,DC=x") == "x,y"
    assert connector._username_of(None, "uid=x,ou=other,dc=x") is None


# --- The registry ---------------------------------------------------------------------------------------


class AcmeConnector(Connector):
    name = "acme"

    def grant(self, user, event): ...
    def revoke(self, user, event): ...
    def is_granted(self, user):
        return None


class NotAConnector:
    name = "nope"


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(connectors, "_loaded", False)
    monkeypatch.setattr(connectors, "REGISTRY", dict(REGISTRY))
    monkeypatch.setattr(connectors, "entry_points", lambda group: [])
    return connectors


@override_settings(BROKER_CONNECTORS=["tests.grants.test_connectors.AcmeConnector"])
def test_a_deployment_adds_a_connector_by_naming_its_class_in_a_setting(fresh_registry):
    assert fresh_registry.load()["acme"] is AcmeConnector
    assert fresh_registry.connector_class("acme") is AcmeConnector


def test_a_package_adds_a_connector_through_an_entry_point(fresh_registry, monkeypatch):
    entry = EntryPoint(
        name="acme", value="tests.grants.test_connectors:AcmeConnector", group="access_broker.connectors"
    )
    monkeypatch.setattr(
        connectors, "entry_points", lambda group: [entry] if group == "access_broker.connectors" else []
    )
    assert fresh_registry.load()["acme"] is AcmeConnector


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tests.grants.test_connectors.Missing", "cannot import 'tests.grants.test_connectors.Missing'"),
        ("tests.grants.test_connectors.NotAConnector", "is not a subclass of grants.connectors.base.Connector"),
        ("tests.grants.test_connectors.ClashingConnector", "a connector named 'webhook' is already registered"),
        ("Acme", "is not a dotted path"),
    ],
)
def test_a_bad_connector_setting_stops_the_start_with_its_reason(fresh_registry, path, message):
    with override_settings(BROKER_CONNECTORS=[path]), pytest.raises(ImproperlyConfigured, match=message):
        fresh_registry.load()


class ClashingConnector(AcmeConnector):
    name = "webhook"


def test_a_connector_added_by_setting_is_accepted_by_the_policy_loader(fresh_registry):
    with override_settings(BROKER_CONNECTORS=["tests.grants.test_connectors.AcmeConnector"]):
        fresh_registry.load()
    text = (
        "roles:\n  - {slug: r, name: R, max_duration: 1h, approval: {auto_approve: true}, target: {connector: acme}}\n"
    )
    assert load(text).roles[0].target.connector == "acme"


def test_the_built_in_connectors_are_registered():
    assert {DjangoGroupConnector, PostgresRoleConnector, LdapGroupConnector, WebhookConnector} <= set(REGISTRY.values())
