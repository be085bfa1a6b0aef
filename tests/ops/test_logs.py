"""Logs: JSON lines that parse, one request id from the request into its tasks, ids on lifecycle
lines, and never a secret: the secret-grep test runs a whole story and looks for every secret it used."""

import io
import json
import logging
import re
from datetime import timedelta

import pytest
import time_machine
from celery import current_app
from django.core import mail
from django.test import Client

from broker.telemetry.context import accept_or_new
from broker.telemetry.logs import ContextFilter, JsonFormatter, TextFormatter, redact
from tests.conftest import T0
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory
from tests.otp import LINK, authenticator, code_of

PASSWORD = "correct horse battery staple"


@pytest.fixture
def logs():
    """Everything logged, at DEBUG, through both formatters: (text stream, JSON stream)."""
    # Loading the task modules can set Django up again, which reconfigures logging: do it first.
    current_app.loader.import_default_modules()
    text, lines = io.StringIO(), io.StringIO()
    handlers = []
    for stream, formatter in ((text, TextFormatter()), (lines, JsonFormatter())):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(ContextFilter())
        handler.setLevel(logging.DEBUG)
        handlers.append(handler)
    root = logging.getLogger()
    old_level = root.level
    loggers = [logging.getLogger(name) for name in ("broker", "accounts", "approvals", "grants", "notifications")]
    old_levels = [lg.level for lg in loggers]
    root.setLevel(logging.DEBUG)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield text, lines
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(old_level)
        for lg, level in zip(loggers, old_levels, strict=True):
            lg.setLevel(level)


def parsed(lines: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in lines.getvalue().splitlines() if line.strip()]


def test_a_sane_request_id_is_kept_and_anything_else_replaced():
    assert accept_or_new("abc-123.x") == "abc-123.x"
    made = accept_or_new('evil"\n{"level":"ERROR"}')
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert accept_or_new(None) != accept_or_new(None)


@pytest.mark.django_db
def test_the_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="trace-7").headers["X-Request-ID"] == "trace-7"
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/healthz").headers["X-Request-ID"])


@pytest.mark.django_db(transaction=True)
def test_json_lines_parse_and_carry_the_request_id_into_the_tasks_it_queued(logs, bearer_for_alice):
    api, _alice = bearer_for_alice
    response = api.post(
        "/api/v1/requests/",
        {"role": "sandbox", "duration_seconds": 600},
        content_type="application/json",
        HTTP_X_REQUEST_ID="story-42",
    )
    assert response.status_code == 201, response.content
    assert response.headers["X-Request-ID"] == "story-42"

    records = parsed(logs[1])
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    task_lines = [r for r in records if r.get("task_name") == "grants.tasks.activate_grant"]
    assert task_lines, [
        (r["logger"], r.get("task_name"), r["message"][:50]) for r in records if r["logger"] != "factory.generate"
    ]
    assert {r["request_id"] for r in task_lines} == {"story-42"}
    (activated,) = [r for r in records if r["message"].startswith("grant.activated")]
    assert activated["request_id"] == "story-42"
    assert activated["grant_id"] == response.json()["grant"]
    (created,) = [r for r in records if r["message"].startswith("request.created")]
    assert created["access_request_id"] == response.json()["id"]


@pytest.fixture
def bearer_for_alice(db):
    from accounts.tokens import token_create
    from broker.models import Channel

    alice = UserFactory(username="alice")
    role = RoleFactory(slug="sandbox", auto_approve=True, requires_justification=False)
    EligibilityFactory(role=role, user=alice)
    _, token = token_create(user=alice, scopes=["read", "request"], via=Channel.CLI)
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}"), alice


def test_redaction_removes_every_shape_of_credential():
    line = (
        "GET /email-link/eyJhbGciOi.abc-def/ Authorization: Bearer pab_ab12_s3cr3t "
        "/account/password-reset/MQ/c4x7-9f2a/ /callback?code=xyz&state=abc "
        "https://hooks.slack.com/services/T000/B000/XXXX sessionid=k3y"
    )
    clean = redact(line)
    for secret in ("eyJhbGciOi", "s3cr3t", "c4x7-9f2a", "xyz", "abc&", "T000", "XXXX", "k3y"):
        assert secret not in clean, (secret, clean)


@pytest.mark.django_db(transaction=True)
def test_no_secret_token_code_or_session_key_is_ever_logged(logs, settings):
    """A whole story, logged at DEBUG in both formats, then grepped for every secret it used."""
    settings.METRICS_TOKEN = "metrics-secret-0123456789abcdef"
    secrets = {settings.SECRET_KEY, settings.AUDIT_KEY, settings.METRICS_TOKEN, PASSWORD}
    with time_machine.travel(T0, tick=False) as clock:
        alice, carol = UserFactory(username="alice"), UserFactory(username="carol")
        role = RoleFactory(slug="prod-db", requires_mfa=True, max_duration=timedelta(hours=4))
        StageFactory(role=role, users=[carol])
        EligibilityFactory(role=role, user=alice)
        authenticator(alice)
        authenticator(carol)

        # alice signs in (one wrong password first), makes a token with a code, asks with another code.
        web = Client()
        web.post("/account/login/", {"username": "alice", "password": PASSWORD + "x"})
        assert web.post("/account/login/", {"username": "alice", "password": PASSWORD}).status_code == 302
        secrets |= {web.cookies["sessionid"].value, web.cookies["csrftoken"].value}
        code = code_of(alice)
        secrets.add(code)
        made = web.post(
            "/api/v1/tokens/",
            {"name": "ci", "scopes": ["read", "request"], "otp": code},
            content_type="application/json",
        )
        token = made.json()["token"]
        secrets.add(token)
        api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        clock.shift(timedelta(seconds=30))
        code = code_of(alice)
        secrets.add(code)
        asked = api.post(
            "/api/v1/requests/",
            {"role": "prod-db", "duration_seconds": 600, "justification": "INC-9", "otp": code},
            content_type="application/json",
        )
        assert asked.status_code == 201, asked.content

        # carol's email link; a mangled copy of it; carol signs in and approves with a code.
        (link,) = {m for message in mail.outbox for m in LINK.findall(message.body)}
        token_part = link.rstrip("/").rsplit("/", 1)[1]
        secrets |= {token_part, token_part[:-1]}  # the genuine link, and what the mangled one shares with it
        Client().get(link[:-2] + "x/")  # a bad signature: refused, and Django logs the path
        approver = Client()
        approver.post("/account/login/", {"username": "carol", "password": PASSWORD, "next": link})
        clock.shift(timedelta(seconds=30))
        code = code_of(carol)
        secrets.add(code)
        decided = approver.post(link, {"decision": "approve", "code": code, "comment": "ok"})
        assert decided.status_code == 200, decided.content[:300]

        # A wrong bearer token, the metrics with their token, a password reset link opened.
        Client(HTTP_AUTHORIZATION="Bearer pab_forged_0123456789abcdef").get("/api/v1/roles/")
        Client(HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}").get("/metrics")
        mail.outbox.clear()
        Client().post("/account/password-reset/", {"email": alice.email})
        (reset,) = re.findall(r"https?://\S+/account/password-reset/\S+/\S+/", mail.outbox[0].body)
        secrets.add(reset.split("/account/password-reset/")[1])
        Client().get(reset)

        grant = asked.json()["id"]
        assert api.get(f"/api/v1/requests/{grant}/").status_code == 200

    everything = logs[0].getvalue() + logs[1].getvalue()
    assert "grant.activated" in everything  # the story was logged
    found = sorted(s for s in secrets if s and s in everything)
    assert not found, f"secrets in the logs: {found}"
