"""Chat webhooks (Slack- and Teams-compatible), against a real HTTP receiver on 127.0.0.1."""

from datetime import timedelta

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from broker.models import Channel
from grants import services as grants
from grants.connectors import REGISTRY
from notifications import services, tasks
from notifications.chat import slack_payload, teams_payload
from notifications.models import Notification
from tests.notifications.test_notifications import DeadConnector
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def slack(settings):
    receiver = Receiver(acts=False)
    settings.SLACK_WEBHOOK_URL = receiver.url.replace("/hooks/access", "/services/T1/B1/secret")
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def teams(settings):
    receiver = Receiver(acts=False)
    settings.TEAMS_WEBHOOK_URL = receiver.url.replace("/hooks/access", "/workflows/teams")
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def sent(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def chat_rows(**filters):
    return Notification.objects.filter(channel="chat", **filters)


def test_a_request_to_approve_reaches_slack_with_the_portal_link_and_no_approval_token(role, request_role, slack, sent):
    with sent():
        req = request_role(role, justification="INC-7 disk full")

    (posted,) = slack.received
    payload = posted.json
    assert posted.path == "/services/T1/B1/secret"
    assert payload["text"].startswith(f"Decision needed: alice asks for db-admin (request #{req.pk})")
    kinds = [block["type"] for block in payload["blocks"]]
    assert kinds == ["header", "section", "section", "actions"]
    button = payload["blocks"][-1]["elements"][0]
    assert button["url"].endswith(f"/requests/{req.pk}/")
    assert "INC-7 disk full" in str(payload["blocks"][2])
    assert "email-link" not in posted.body.decode()
    # carol's email carries her own link; the chat message never does.
    assert any("/email-link/" in message.body for message in mail.outbox)


def test_a_channel_hears_the_default_language_even_when_german_approvers_get_german_email(
    role, request_role, approver, teams, sent
):
    from django.utils import translation

    from accounts.preferences import language_set

    language_set(user=approver, language="de")
    with translation.override("de"), sent():  # as in a German person's request
        request_role(role)
    (posted,) = teams.received
    card = posted.json["attachments"][0]["content"]
    assert {fact["title"] for fact in card["body"][-1]["facts"]} >= {"Who", "Role", "Justification"}
    assert any("Entscheidung nötig" in message.subject for message in mail.outbox)


def test_the_same_request_reaches_teams_as_an_adaptive_card(role, request_role, teams, sent):
    with sent():
        req = request_role(role)

    (posted,) = teams.received
    attachment = posted.json["attachments"][0]
    assert posted.json["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"][0]["text"].startswith("Decision needed: alice asks for db\\-admin")
    assert {fact["title"] for fact in card["body"][-1]["facts"]} >= {"Who", "Role", "Justification"}
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open the request", "url": card["actions"][0]["url"]}
    ]
    assert card["actions"][0]["url"].endswith(f"/requests/{req.pk}/")


def test_decisions_are_posted(role, request_role, approver, slack, sent):
    from approvals import services as approvals

    req = request_role(role)
    with sent():
        approvals.request_deny(
            request_id=req.pk, approver=approver, comment="not now", via=Channel.PORTAL, mfa_at=timezone.now()
        )

    (denied,) = [r.json for r in slack.received if r.json["text"].startswith("Denied")]
    assert denied["text"].startswith(f"Denied: db-admin for alice (request #{req.pk})")
    assert "not now" in str(denied["blocks"])


def test_break_glass_activations_are_posted_as_urgent(make_role, request_role, slack, sent):
    role = make_role(slug="glass", break_glass=True)
    with sent():
        request_role(role, mfa_at=timezone.now(), justification="prod is down")

    (alert,) = [r.json for r in slack.received if r.json["text"].startswith("Break-glass")]
    assert alert["blocks"][-1]["elements"][0]["style"] == "danger"


@override_settings(REVOKE_MAX_ATTEMPTS=1)
def test_revoke_failures_are_posted(make_role, active_grant, requester, slack, sent, monkeypatch):
    from tests.factories import UserFactory

    monkeypatch.setitem(REGISTRY, "dead", DeadConnector)
    role = make_role(stages=[[UserFactory(username="carol")]], connector="dead", connector_config={"group": "g"})
    grant = active_grant(target_role=role)
    with sent():
        grants.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.PORTAL)

    (alert,) = [r.json for r in slack.received if r.json["text"].startswith("Revocation failing")]
    assert "target unreachable" in str(alert["blocks"])


def test_a_broken_audit_chain_is_posted(active_grant, slack):
    from broker.models import AuditEvent
    from broker.tasks import verify_audit

    active_grant()
    AuditEvent.objects.filter(seq=2).update(data={"edited": True})
    verify_audit()

    (alert,) = [r.json for r in slack.received if r.json["text"].startswith("Audit trail broken")]
    assert "event #2" in alert["text"]


def test_a_role_names_its_own_webhook_by_environment_variable(make_role, request_role, slack, teams, sent, monkeypatch):
    own = Receiver(acts=False)
    monkeypatch.setenv("DBA_TEAMS_WEBHOOK", own.url)
    role = make_role(
        stages=[[__import__("tests.factories", fromlist=["UserFactory"]).UserFactory(username="carol")]],
        slug="dba",
        chat_webhooks=[{"format": "teams", "url_env": "DBA_TEAMS_WEBHOOK"}],
    )
    try:
        with sent():
            request_role(role)
    finally:
        own.server.shutdown()

    assert len(own.received) == 1 and own.received[0].json["type"] == "message"
    assert len(slack.received) == len(teams.received) == 1  # the global ones too
    assert set(chat_rows().values_list("destination", flat=True)) == {"slack", "teams", "teams:DBA_TEAMS_WEBHOOK"}


def test_a_role_webhook_whose_variable_is_unset_is_recorded_as_failed(make_role, request_role, approver):
    role = make_role(stages=[[approver]], slug="dba", chat_webhooks=[{"format": "slack", "url_env": "NOT_SET_HERE"}])
    req = request_role(role)
    with pytest.raises(services.SendFailed, match="chat slack:NOT_SET_HERE"):
        services.notify(kind="decision_needed", object_id=req.pk, revision=req.version)

    row = chat_rows().get()
    assert (row.status, row.last_error) == ("failed", "the environment variable NOT_SET_HERE is not set")
    assert len(mail.outbox) == 1  # carol's email went out all the same


def test_a_message_is_posted_once_however_often_the_task_runs(role, request_role, slack):
    req = request_role(role)
    for _ in range(3):
        services.notify(kind="decision_needed", object_id=req.pk, revision=req.version)

    assert len(slack.received) == 1
    assert chat_rows().get().status == "sent"


def test_a_refused_post_is_retried_and_then_sent_once(role, request_role, slack):
    slack.statuses = [503]
    req = request_role(role)

    # The task asks Celery for a retry when a webhook failed (eagerly here: at once), which posts it.
    tasks.notify.apply(args=("decision_needed", req.pk, req.version), throw=False)
    services.notify(kind="decision_needed", object_id=req.pk, revision=req.version)

    assert len(slack.received) == 2
    row = chat_rows().get()
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(mail.outbox) == 1  # the email was sent once, by the first run


def test_a_failing_webhook_leaves_email_and_the_lifecycle_untouched(role, request_role, approver, slack):
    from approvals import services as approvals

    slack.statuses = [500] * 20
    req = request_role(role)
    with pytest.raises(services.SendFailed):
        services.notify(kind="decision_needed", object_id=req.pk, revision=req.version)
    assert len(mail.outbox) == 1  # carol was mailed

    req = approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL, mfa_at=timezone.now())
    grant = grants.grant_activate(grant_id=req.grant.pk)

    assert (req.status, grant.status) == ("approved", "active")
    assert chat_rows().get().status == "failed"


def test_a_webhook_that_does_not_answer_times_out_without_holding_email(role, request_role, slack, settings):
    settings.CHAT_WEBHOOK_TIMEOUT = timedelta(seconds=0.3)
    slack.delay = 2
    req = request_role(role)
    with pytest.raises(services.SendFailed):
        services.notify(kind="decision_needed", object_id=req.pk, revision=req.version)

    assert len(mail.outbox) == 1
    row = chat_rows().get()
    assert (row.status, row.last_error) == ("failed", "the webhook did not answer within 0.3 s")


def test_a_webhook_that_refuses_connections_is_recorded_without_its_url(role, request_role, settings):
    settings.SLACK_WEBHOOK_URL = "http://127.0.0.1:9/services/T1/B1/very-secret"
    req = request_role(role)
    with pytest.raises(services.SendFailed):
        services.notify(kind="decision_needed", object_id=req.pk, revision=req.version)

    row = chat_rows().get()
    assert row.status == "failed" and "very-secret" not in row.last_error
    assert row.last_error.startswith("the webhook cannot be reached")


def test_people_cannot_ping_the_channel_or_make_links_in_slack():
    from notifications.chat import ChatMessage

    message = ChatMessage(
        title="t", lines=["<!channel> see <https://evil.example|the runbook>"], link_label="Open", link_url="https://x/"
    )
    text = slack_payload(message)["blocks"][1]["text"]["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


def test_people_cannot_make_links_in_teams():
    from notifications.chat import ChatMessage

    message = ChatMessage(title="t", lines=["[click](https://evil.example)"], link_label="Open", link_url="https://x/")
    text = teams_payload(message)["attachments"][0]["content"]["body"][1]["text"]
    assert text == "\\[click\\]\\(https://evil\\.example\\)"


def test_a_policy_names_a_roles_webhooks_by_variable_or_file_never_by_url(db):
    from broker import policy
    from broker.models import Role
    from tests.broker.test_policy import GOOD, errors_of
    from tests.factories import GroupFactory, UserFactory

    UserFactory(username="alice"), UserFactory(username="carol")
    GroupFactory(name="dba-leads"), GroupFactory(name="dba")
    hooks = (
        "    notify:\n      chat:\n        - {format: slack, url_env: DBA_SLACK_WEBHOOK}\n"
        "        - {format: teams, url_file: /run/secrets/dba-teams}\n"
    )
    text = GOOD.replace("\neligibility:\n", "\n" + hooks + "eligibility:\n")
    policy.apply(policy.load(text))
    assert Role.objects.get().chat_webhooks == [
        {"format": "slack", "url_env": "DBA_SLACK_WEBHOOK"},
        {"format": "teams", "url_file": "/run/secrets/dba-teams"},
    ]

    inline = GOOD.replace(
        "\neligibility:\n",
        "\n    notify:\n      chat: [{format: slack, url: 'https://hooks.slack.com/x'}]\neligibility:\n",
    )
    (error,) = errors_of(inline)
    assert "roles[0].notify.chat[0].url: unknown key" in error
    (error,) = errors_of(
        GOOD.replace("\neligibility:\n", "\n    notify: {chat: [{format: irc, url_env: X}]}\neligibility:\n")
    )
    assert "must be slack or teams" in error
