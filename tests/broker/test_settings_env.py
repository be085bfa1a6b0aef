"""Configuration from the environment fails loudly, naming the variable."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from broker import env


@pytest.mark.parametrize(
    ("reader", "value", "message"),
    [
        (lambda: env.env_bool("X_FLAG"), "maybe", "X_FLAG: expected true or false"),
        (lambda: env.env_int("X_NUM", 1), "ten", "X_NUM: expected a whole number"),
        (lambda: env.env_int("X_NUM", 1, minimum=1), "0", "X_NUM: must be at least 1"),
        (lambda: env.env_duration("X_DUR", "10s"), "10 parsecs", "X_DUR: expected a duration"),
        (lambda: env.env_database("X_DB", {}), "mysql://u@h/db", "X_DB: unsupported scheme 'mysql'"),
        (lambda: env.env_database("X_DB", {}), "postgresql://u@h:5432/", "X_DB: the URL names no database"),
        (lambda: env.env_url("X_URL", "", schemes={"redis"}), "amqp://h", "X_URL: unsupported scheme 'amqp'"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, reader, value, message):
    monkeypatch.setenv(message.split(":")[0], value)
    with pytest.raises(ImproperlyConfigured, match=message):
        reader()


def test_secret_can_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "key"
    secret.write_text("s3cret-from-file\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert env.env_str("X_SECRET") == "s3cret-from-file"


def test_unreadable_secret_file_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="X_SECRET_FILE: cannot read"):
        env.env_str("X_SECRET")


def test_postgres_url_is_parsed_for_psycopg(monkeypatch):
    monkeypatch.setenv("X_DB", "postgresql://broker:pw@db.internal:5433/broker")
    config = env.env_database("X_DB", {})
    assert (config["ENGINE"], config["HOST"], config["PORT"], config["NAME"]) == (
        "django.db.backends.postgresql",
        "db.internal",
        5433,
        "broker",
    )


def test_settings_refuse_to_start_without_a_secret_key_when_debug_is_off(tmp_path):
    import os
    import subprocess
    import sys

    env_vars = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")}
    env_vars.update(BROKER_VAR_DIR=str(tmp_path), ALLOWED_HOSTS="x")
    result = subprocess.run(
        [sys.executable, "-c", "import broker.settings"], env=env_vars, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "SECRET_KEY: required when DEBUG is off" in result.stderr


def test_an_unknown_enrolment_code_rule_stops_the_start_naming_the_variable(tmp_path):
    import os
    import subprocess
    import sys

    env_vars = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    env_vars.update(
        BROKER_VAR_DIR=str(tmp_path),
        DEBUG="1",
        MFA_ENROLMENT_CODE_REQUIRED="admins",
    )
    result = subprocess.run(
        [sys.executable, "-c", "import broker.settings"], env=env_vars, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "MFA_ENROLMENT_CODE_REQUIRED: expected approvers, all or off" in result.stderr


# --- The audit key ------------------------------------------------------------------------------------

GOOD_KEY = "a-good-audit-key-of-more-than-32-characters"


def import_settings(tmp_path, **env_vars):
    import os
    import subprocess
    import sys

    names = ("DEBUG", "DJANGO_SETTINGS_MODULE", "AUDIT_KEY", "AUDIT_KEY_FILE", "AUDIT_OLD_KEYS", "AUDIT_KEY_ID")
    base = {k: v for k, v in os.environ.items() if k not in names}
    base.update(BROKER_VAR_DIR=str(tmp_path), ALLOWED_HOSTS="x", SECRET_KEY="s" * 40)
    return subprocess.run(
        [sys.executable, "-c", "import broker.settings"],
        env={**base, **env_vars},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("env_vars", "message"),
    [
        ({}, "AUDIT_KEY: required when DEBUG is off"),
        ({"AUDIT_KEY": "short-key"}, "AUDIT_KEY: must be at least 32 characters long, got 9"),
        ({"AUDIT_KEY": GOOD_KEY, "AUDIT_KEY_FILE": "/dev/null"}, "AUDIT_KEY and AUDIT_KEY_FILE are both set"),
        ({"AUDIT_KEY": GOOD_KEY, "AUDIT_KEY_ID": "one two"}, "AUDIT_KEY_ID: expected a key id"),
        (
            {"AUDIT_KEY": GOOD_KEY, "AUDIT_OLD_KEYS": "no-colon-here"},
            "AUDIT_OLD_KEYS: entry 1 is not of the form id:key",
        ),
        (
            {"AUDIT_KEY": GOOD_KEY, "AUDIT_OLD_KEYS": f"0:{GOOD_KEY},0:{GOOD_KEY}x"},
            "AUDIT_OLD_KEYS: key id '0' is listed twice",
        ),
        (
            {"AUDIT_KEY": GOOD_KEY, "AUDIT_OLD_KEYS": f"0:{GOOD_KEY},old:tooshort"},
            "AUDIT_OLD_KEYS: the key of id 'old' must be at least 32 characters long",
        ),
        (
            {"AUDIT_KEY": GOOD_KEY, "AUDIT_OLD_KEYS": f"1:{GOOD_KEY}x"},
            "AUDIT_OLD_KEYS: key id '1' is also AUDIT_KEY_ID",
        ),
        ({"AUDIT_KEY": GOOD_KEY, "AUDIT_CHECKPOINT_SYSLOG": "tcp://h:514"}, "AUDIT_CHECKPOINT_SYSLOG: expected"),
    ],
)
def test_settings_refuse_a_missing_or_malformed_audit_key(tmp_path, env_vars, message):
    result = import_settings(tmp_path, **env_vars)
    assert result.returncode != 0
    assert message in result.stderr
    assert GOOD_KEY not in result.stderr  # keys never reach the logs


def test_old_audit_keys_can_come_from_a_file_one_per_line(monkeypatch, tmp_path):
    keys = tmp_path / "old-keys"
    keys.write_text(f"1:{GOOD_KEY}\n2:{GOOD_KEY[::-1]}\n")
    monkeypatch.setenv("X_OLD_KEYS_FILE", str(keys))
    assert env.env_keys("X_OLD_KEYS", min_length=32) == {"1": GOOD_KEY, "2": GOOD_KEY[::-1]}


def test_debug_keeps_a_random_audit_key_under_var(tmp_path):
    result = import_settings(tmp_path, DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "dev-audit-key").read_text()) >= 32


# --- Identity: OpenID Connect, SCIM ----------------------------------------------------------------


def _start(tmp_path, **variables):
    import os
    import subprocess
    import sys

    env_vars = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    env_vars.update({"BROKER_VAR_DIR": str(tmp_path), "DEBUG": "1", **variables})
    return subprocess.run(
        [sys.executable, "-c", "import broker.settings"], env=env_vars, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"OIDC_ISSUER": "https://idp.example.com"}, "OIDC_CLIENT_ID: required when OIDC_ISSUER is set"),
        ({"OIDC_ISSUER": "ftp://idp.example.com"}, "OIDC_ISSUER: unsupported scheme 'ftp'"),
        (
            {"OIDC_ISSUER": "http://idp.example.com", "OIDC_CLIENT_ID": "b", "DEBUG": "0", "SECRET_KEY": "k" * 40,
             "ALLOWED_HOSTS": "x", "AUDIT_KEY": "a" * 40},
            "OIDC_ISSUER: must be an https:// URL",
        ),
        ({"OIDC_ISSUER": "https://idp.example.com", "OIDC_CLIENT_ID": "b", "OIDC_SCOPES": "email profile"},
         "OIDC_SCOPES: must include openid"),
        ({"LOCAL_LOGIN": "off"}, "LOCAL_LOGIN: off needs OIDC_ISSUER"),
        ({"LOCAL_LOGIN": "perhaps"}, "LOCAL_LOGIN: expected true or false"),
        ({"OIDC_STEP_UP": "both"}, "OIDC_STEP_UP: expected idp or local"),
        ({"IDP_MANAGED_GROUPS": "=dba"}, "IDP_MANAGED_GROUPS: '=dba' is neither"),
        ({"SCIM_TOKEN": "short"}, "SCIM_TOKEN: must be at least 32 characters"),
    ],
)  # fmt: skip
def test_identity_settings_refuse_to_start_naming_the_variable(tmp_path, variables, message):
    result = _start(tmp_path, **variables)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_client_secret_and_the_scim_token_may_come_from_files(tmp_path):
    (tmp_path / "secret").write_text("s3cret\n")
    (tmp_path / "scim").write_text("t" * 40 + "\n")
    result = _start(
        tmp_path,
        OIDC_ISSUER="https://login.example.com/realms/corp/",
        OIDC_CLIENT_ID="access-broker",
        OIDC_CLIENT_SECRET_FILE=str(tmp_path / "secret"),
        SCIM_TOKEN_FILE=str(tmp_path / "scim"),
        OIDC_SCOPES="openid,email profile groups",
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: expected text or json"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN: must be at least 16 characters long"),
        ({"METRICS_ALLOWED_IPS": "10.0.0.0/8, intranet"}, "METRICS_ALLOWED_IPS: 'intranet' is not an IP address"),
        ({"HEARTBEAT_INTERVAL": "1m", "HEARTBEAT_MAX_AGE": "30s"}, "HEARTBEAT_MAX_AGE: must be longer"),
        ({"SLACK_WEBHOOK_URL": "ftp://hooks"}, "SLACK_WEBHOOK_URL: unsupported scheme 'ftp'"),
        ({"CHAT_WEBHOOK_TIMEOUT": "2m"}, "CHAT_WEBHOOK_TIMEOUT: must be more than 0s and at most 30s"),
    ],
)
def test_operations_settings_refuse_to_start_naming_the_variable(tmp_path, variables, message):
    result = import_settings(tmp_path, AUDIT_KEY=GOOD_KEY, **variables)
    assert result.returncode != 0
    assert message in result.stderr


def test_metrics_networks_are_parsed(monkeypatch):
    monkeypatch.setenv("X_NETS", "10.0.0.0/8, 192.0.2.7, ::1")
    assert [str(n) for n in env.env_networks("X_NETS")] == ["10.0.0.0/8", "192.0.2.7/32", "::1/128"]


def test_postgres_gets_a_connect_timeout(monkeypatch):
    monkeypatch.setenv("X_DB", "postgresql://u@h:5432/db")
    assert env.env_database("X_DB", {})["OPTIONS"]["connect_timeout"] == 5
    monkeypatch.setenv("X_DB", "postgresql://u@h:5432/db?connect_timeout=2")
    assert env.env_database("X_DB", {})["OPTIONS"]["connect_timeout"] == 2  # the URL wins


def test_postgresql_connections_run_without_jit_compilation(monkeypatch):
    from broker.env import env_database

    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db:5432/broker?options=-c%20statement_timeout%3D5000")
    options = env_database("DATABASE_URL", {})["OPTIONS"]["options"]
    assert options == "-c statement_timeout=5000 -c jit=off"
