"""Chat: Slack-compatible and Microsoft Teams-compatible incoming webhooks, through the same outbox.

Which messages: a request waiting for a decision (with the portal link; never an approver's email
link, which is a personal, single-use credential), decisions, break-glass activations and
extensions, revocations that keep failing, and a broken audit chain.

Where they go: every global webhook (``SLACK_WEBHOOK_URL``, ``TEAMS_WEBHOOK_URL``, or their
``_FILE``), plus the webhooks of the role concerned (policy ``notify.chat``: each names the
environment variable or the file that holds its URL; the URL itself is never in the policy).

How: each (kind, object, webhook, revision) is claimed in the outbox (``Notification`` with
``channel=chat``) before it is posted, exactly like an email, so a message goes out at most once;
a webhook that fails is marked ``failed`` and retried with the email task's backoff, and never
stops an email or the lifecycle (the posts happen after the emails, in the notification task, with a
timeout, outside every transaction).
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone, translation

from approvals.models import AccessRequest, Decision
from broker import links
from broker.audit.status import stored_verification
from broker.models import Role
from broker.notify import Message
from broker.text import visible
from grants.models import Grant
from notifications.messages import _grant, _grant_facts, _request, _request_facts, _when, waiting_approvers
from notifications.models import Notification

log = logging.getLogger(__name__)

Kind = Message


# --- What is said -----------------------------------------------------------------------------------


@dataclass
class ChatMessage:
    title: str
    lines: list[str]
    link_label: str
    link_url: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    role: Role | None = None  # whose webhooks hear of it, besides the global ones
    urgent: bool = False


def _decision_needed(object_id: int, revision: int, now: datetime) -> ChatMessage | None:
    req = _request(object_id)
    if req is None or req.status != AccessRequest.Status.PENDING or req.version != revision or now >= req.expires_at:
        return None
    stages = req.role.stages.count()
    waiting = ", ".join(a.get_username() for a in waiting_approvers(req)) or "nobody (check the approval stages)"
    return ChatMessage(
        title=f"Decision needed: {req.requester.get_username()} asks for {req.role.slug} (request #{req.pk})",
        lines=[
            f"Stage {req.current_stage + 1} of {stages} waits for: {waiting}.",
            f"Unanswered, it expires at {_when(req.expires_at)}. Deciding needs signing in and a second factor.",
        ],
        facts=_request_facts(req),
        link_label="Open the request",
        link_url=links.absolute(links.request_path(req.pk)),
        role=req.role,
    )


def _decided(verdict: str) -> Callable[[int, int, datetime], ChatMessage | None]:
    status = AccessRequest.Status.APPROVED if verdict == Decision.Verdict.APPROVE else AccessRequest.Status.DENIED

    def build(object_id: int, revision: int, now: datetime) -> ChatMessage | None:
        req = _request(object_id)
        if req is None or req.status != status:
            return None
        deciders = ", ".join(req.decisions.filter(verdict=verdict).values_list("approver__username", flat=True))
        word = "Approved" if verdict == Decision.Verdict.APPROVE else "Denied"
        facts = _request_facts(req) + [(f"{word} by", deciders or "policy")]
        comment = req.decisions.filter(verdict=verdict).values_list("comment", flat=True).first()
        if comment:
            facts.append(("Comment", comment))
        return ChatMessage(
            title=f"{word}: {req.role.slug} for {req.requester.get_username()} (request #{req.pk})",
            lines=[],
            facts=facts,
            link_label="Open the request",
            link_url=links.absolute(links.request_path(req.pk)),
            role=req.role,
        )

    return build


def _break_glass(object_id: int, revision: int, now: datetime) -> ChatMessage | None:
    grant = _grant(object_id)
    if grant is None or not grant.break_glass:
        return None
    who = grant.user.get_username()
    extension = revision not in (0, grant.request_id)
    return ChatMessage(
        title=(
            f"Break-glass extended: {who} keeps {grant.role.slug} until {_when(grant.expires_at)}"
            if extension
            else f"Break-glass: {who} activated {grant.role.slug} without approval"
        ),
        lines=["The grant waits for its post-hoc review by the security group."],
        facts=_grant_facts(grant) + [("Justification", grant.request.justification or "—")],
        link_label="Open the grant",
        link_url=links.absolute(links.grant_path(grant.pk)),
        role=grant.role,
        urgent=True,
    )


def _revoke_failed(object_id: int, revision: int, now: datetime) -> ChatMessage | None:
    grant = _grant(object_id)
    if grant is None or grant.status != Grant.Status.REVOKE_FAILED:
        return None
    return ChatMessage(
        title=f"Revocation failing: {grant.role.slug} of {grant.user.get_username()} (grant #{grant.pk})",
        lines=[
            f"The target still may give the access: {grant.attempts} removal attempts failed. The grant is no "
            "longer effective in the broker; remove the access by hand, then retry from the admin.",
            f"Next automatic retry: {_when(grant.next_attempt_at)}.",
        ],
        facts=_grant_facts(grant) + [("Last error", grant.last_error or "—")],
        link_label="Open the grant",
        link_url=links.absolute(links.grant_path(grant.pk)),
        role=grant.role,
        urgent=True,
    )


def _audit_broken(object_id: int, revision: int, now: datetime) -> ChatMessage | None:
    found, authentic = stored_verification()
    if found is None or found.ok or not authentic or (found.broken_seq or 0) != object_id:
        return None
    where = f"event #{found.broken_seq}" if found.broken_seq else "its checkpoints"
    return ChatMessage(
        title=f"Audit trail broken at {where}",
        lines=[f"The scheduled check found: {found.reason}.", f"Events up to #{found.seq} still verify."],
        link_label="Open the audit log",
        link_url=links.absolute(links.audit_log_path()),
        urgent=True,
    )


BUILDERS: dict[str, Callable[[int, int, datetime], ChatMessage | None]] = {
    Kind.DECISION_NEEDED: _decision_needed,
    Kind.APPROVED: _decided(Decision.Verdict.APPROVE),
    Kind.DENIED: _decided(Decision.Verdict.DENY),
    Kind.BREAK_GLASS: _break_glass,
    Kind.REVOKE_FAILED: _revoke_failed,
    Kind.AUDIT_BROKEN: _audit_broken,
}


# --- Payloads -----------------------------------------------------------------------------------------


def _slack_text(text: object) -> str:
    # Slack's mrkdwn: & < > are control characters (<!channel>, <url|label>); escape them in people's text.
    return visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: ChatMessage) -> dict:
    """Slack's Block Kit, with ``text`` as the fallback (Mattermost and Rocket.Chat read ``text``)."""
    title = _slack_text(message.title)
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": visible(message.title)[:150]}}]
    if message.lines:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(map(_slack_text, message.lines))}}
        )
    if message.facts:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{_slack_text(name)}*\n{_slack_text(value)[:1900]}"}
                    for name, value in message.facts[:10]
                ],
            }
        )
    blocks.append(
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": message.link_label},
                    "url": message.link_url,
                    **({"style": "danger"} if message.urgent else {}),
                }
            ],
        }
    )
    fallback = "\n".join([title, *map(_slack_text, message.lines), f"<{message.link_url}|{message.link_label}>"])
    return {"text": fallback, "blocks": blocks}


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<])")


def _teams_text(text: object) -> str:
    # Adaptive Cards render a subset of Markdown: escape it in people's text (no made-up links).
    return _MARKDOWN.sub(r"\\\1", visible(text))


def teams_payload(message: ChatMessage) -> dict:
    """An Adaptive Card in a message, as Teams' incoming webhooks and Workflows take it."""
    body: list[dict] = [
        {
            "type": "TextBlock",
            "text": _teams_text(message.title),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            **({"color": "Attention"} if message.urgent else {}),
        }
    ]
    body += [{"type": "TextBlock", "text": _teams_text(line), "wrap": True} for line in message.lines]
    if message.facts:
        body.append(
            {
                "type": "FactSet",
                "facts": [{"title": name, "value": _teams_text(value)} for name, value in message.facts],
            }
        )
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": message.link_label, "url": message.link_url}],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


PAYLOADS = {"slack": slack_payload, "teams": teams_payload}


# --- Where it goes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    name: str  # the outbox's destination: "slack", "teams", "teams:DBA_TEAMS_URL", "slack:/run/secrets/x"
    format: str
    url: str  # a secret: never logged, never stored
    problem: str = ""  # why the URL cannot be had (a variable not set, a file not readable)


def _from_role(hook: dict) -> Webhook:
    fmt, env, path = hook.get("format", ""), hook.get("url_env"), hook.get("url_file")
    name = f"{fmt}:{env or path}"
    if env:
        url = os.environ.get(env, "").strip()
        problem = "" if url else f"the environment variable {env} is not set"
    else:
        try:
            url, problem = Path(path).read_text().strip(), ""
        except (OSError, TypeError) as exc:
            url, problem = "", f"the file {path} cannot be read ({getattr(exc, 'strerror', exc)})"
    if url and not url.startswith(("https://", "http://")):
        url, problem = "", f"the URL in {env or path} is not http(s)"
    return Webhook(name, fmt, url, problem)


def webhooks(role: Role | None) -> list[Webhook]:
    found = [
        Webhook(fmt, fmt, url)
        for fmt, url in (("slack", settings.SLACK_WEBHOOK_URL), ("teams", settings.TEAMS_WEBHOOK_URL))
        if url
    ]
    for hook in role.chat_webhooks if role is not None else []:
        if isinstance(hook, dict) and hook.get("format") in PAYLOADS:
            found.append(_from_role(hook))
    return found


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class PostFailed(Exception):
    """The webhook did not take the message; the text never contains the URL."""


def post(url: str, payload: dict, *, timeout: float) -> None:
    request = urllib.request.Request(  # noqa: S310 - the operator's http(s) URL, checked above
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "access-broker chat"},
    )
    try:
        with urllib.request.build_opener(_NoRedirects).open(request, timeout=timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        raise PostFailed(f"the webhook answered HTTP {exc.code}") from None
    except TimeoutError:
        raise PostFailed(f"the webhook did not answer within {timeout:g} s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else type(reason).__name__
        raise PostFailed(f"the webhook cannot be reached: {text}") from None
    except OSError as exc:
        raise PostFailed(f"the webhook cannot be reached: {exc.strerror or type(exc).__name__}") from None


# --- The outbox ------------------------------------------------------------------------------------------


def claim(*, kind: str, object_id: int, destination: str, revision: int, now: datetime) -> bool:
    key = {"channel": Notification.Channel.CHAT, "kind": kind, "object_id": object_id, "destination": destination}
    try:
        with transaction.atomic():
            Notification.objects.create(**key, revision=revision, status=Notification.Status.SENDING, created_at=now)
        return True
    except IntegrityError:
        pass
    return bool(
        Notification.objects.filter(
            **key, revision=revision, status=Notification.Status.FAILED, attempts__lt=settings.NOTIFY_MAX_ATTEMPTS
        ).update(status=Notification.Status.SENDING, attempts=F("attempts") + 1)
    )


def _finish(kind: str, object_id: int, destination: str, revision: int, **fields) -> None:
    Notification.objects.filter(
        channel=Notification.Channel.CHAT, kind=kind, object_id=object_id, destination=destination, revision=revision
    ).update(**fields)


def send(*, kind: str, object_id: int, revision: int = 0, now: datetime | None = None) -> tuple[int, list[str]]:
    """Post the chat message of one kind about one object to every webhook it goes to, once each.

    Returns (how many went out now, the webhooks that failed and may be retried).
    """
    builder = BUILDERS.get(kind)
    if builder is None:
        return 0, []
    now = now or timezone.now()
    # A channel is read by a team, not one person: the broker's default language (the facts and
    # durations come from messages.py, which follows the active language).
    with translation.override(settings.LANGUAGE_CODE):
        message = builder(object_id, revision, now)
    if message is None:
        return 0, []
    sent, failed = 0, []
    timeout = settings.CHAT_WEBHOOK_TIMEOUT.total_seconds()
    for hook in webhooks(message.role):
        if not claim(kind=kind, object_id=object_id, destination=hook.name, revision=revision, now=now):
            continue
        try:
            if hook.problem:
                raise PostFailed(hook.problem)
            post(hook.url, PAYLOADS[hook.format](message), timeout=timeout)
        except PostFailed as exc:
            log.warning("chat %s #%s to %s not sent: %s", kind, object_id, hook.name, exc)
            _finish(kind, object_id, hook.name, revision, status=Notification.Status.FAILED, last_error=str(exc)[:2000])
            failed.append(hook.name)
        else:
            _finish(
                kind,
                object_id,
                hook.name,
                revision,
                status=Notification.Status.SENT,
                sent_at=timezone.now(),
                last_error="",
            )
            sent += 1
    return sent, failed
