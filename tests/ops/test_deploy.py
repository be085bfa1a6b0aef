"""The production files: gunicorn.conf.py, the Procfile, the systemd units and the alert rules."""

import re
import runpy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from broker.telemetry.gunicorn import client_address

ROOT = Path(__file__).resolve().parents[2]


def gunicorn_config(monkeypatch, **env) -> dict:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_trusts_no_forwarded_header_without_proxies(monkeypatch):
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    config = gunicorn_config(monkeypatch, TRUSTED_PROXY_COUNT="0")
    assert config["forwarded_allow_ips"] == ""
    assert config["secure_scheme_headers"] == {}


def test_gunicorn_trusts_the_local_proxy_when_there_is_one(monkeypatch):
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    config = gunicorn_config(monkeypatch, TRUSTED_PROXY_COUNT="1")
    assert config["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert "secure_scheme_headers" not in config


def test_gunicorn_takes_its_size_and_address_from_the_environment(monkeypatch):
    config = gunicorn_config(monkeypatch, WEB_CONCURRENCY="3", GUNICORN_BIND="127.0.0.1:9000", GUNICORN_TIMEOUT="20")
    assert (config["workers"], config["bind"], config["timeout"]) == (3, "127.0.0.1:9000", 20)
    assert "%({x-request-id}o)s" in config["access_log_format"] and "%(q)s" not in config["access_log_format"]


def test_the_access_log_client_follows_the_trusted_proxy_rule(monkeypatch):
    environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.9"}
    monkeypatch.setenv("TRUSTED_PROXY_COUNT", "0")
    assert client_address(environ) == "127.0.0.1"
    monkeypatch.setenv("TRUSTED_PROXY_COUNT", "1")
    assert client_address(environ) == "203.0.113.9"


def test_the_access_log_redacts_an_approver_links_token():
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from broker.telemetry.gunicorn import Logger

    logger = Logger(Config())
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/email-link/eyJzZWNyZXQ/?code=123456",
        "PATH_INFO": "/email-link/eyJzZWNyZXQ/",
        "QUERY_STRING": "code=123456",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    response = SimpleNamespace(status="200 OK", sent=10, headers=[("X-Request-ID", "r1")])
    request = SimpleNamespace(headers=[("AUTHORIZATION", "Bearer pab_x_secret")])
    atoms = logger.atoms(response, request, environ, timedelta(milliseconds=5))
    text = " ".join(str(v) for v in atoms.values())
    assert "eyJzZWNyZXQ" not in text and "123456" not in text and "secret" not in text
    assert atoms["{x-request-id}o"] == "r1"


def test_the_procfile_runs_web_worker_and_beat():
    lines = dict(
        line.split(": ", 1)
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(lines) == {"web", "worker", "beat"}
    assert lines["web"].startswith("gunicorn -c gunicorn.conf.py broker.wsgi")
    assert "celery -A broker worker" in lines["worker"] and "celery -A broker beat" in lines["beat"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_the_systemd_units_verify(tmp_path):
    """systemd-analyze verify, with the paths pointed at this checkout (the units name /opt/access-broker)."""
    venv = Path(__import__("sys").executable).parent.parent
    for unit in (ROOT / "deploy" / "systemd").glob("*.service"):
        text = unit.read_text().replace("/opt/access-broker/.venv", str(venv))
        text = text.replace("/etc/access-broker/env", str(ROOT / "deploy" / "systemd" / "env.example"))
        text = re.sub(r"^(User|Group)=.*$", r"\1=root", text, flags=re.M)
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, tmp_path.glob("*.service"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "/access-broker-" in line]
    assert not problems, problems


@pytest.mark.django_db
def test_every_metric_an_alert_rule_names_is_served(client, settings):
    settings.METRICS_TOKEN = "alerts-test-token-0123456789"
    from broker.models import Heartbeat

    Heartbeat.objects.create(name="worker", at=__import__("django.utils.timezone").utils.timezone.now())
    from broker import audit
    from broker.audit.status import store_verification

    store_verification(audit.verify())
    served = client.get("/metrics", HTTP_AUTHORIZATION="Bearer alerts-test-token-0123456789").content.decode()
    rules = yaml.safe_load((ROOT / "docs" / "prometheus-alerts.yml").read_text())["groups"][0]["rules"]
    named = {name for rule in rules for name in re.findall(r"\bbroker_[a-z_]+", rule["expr"])}
    assert len(rules) >= 4
    for name in named:
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert re.search(rf"^# TYPE {base} ", served, re.M) or name in served, name
