"""Timelines and the audit log read as sentences: every action the broker writes has one, and each
end reason of a grant has its own words (badge, timeline, email) while the API keeps the codes."""

import ast
import re
from pathlib import Path

import pytest

from broker import wording
from broker.audit.chain import SYSTEM
from broker.audit.timeline import DESCRIBE, describe
from broker.models import AuditEvent
from grants.models import Grant

ROOT = Path(__file__).resolve().parents[2]
APPS = ("broker", "accounts", "approvals", "grants", "notifications")
ACTION = re.compile(r"^[a-z_]+\.[a-z_]+$")
# Functions that take the action as a parameter and pass it on (their callers are scanned instead).
WRAPPERS = {("accounts/events.py", "action")}


def _module_strings(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level names bound to a string, or to a dict/collection of strings: their strings."""
    found: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            strings = [
                c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)
            ]
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = strings
    return found


def written_actions() -> dict[str, str]:
    """Every action passed to audit.record / chain.record / record_auth_event in the code, and where."""
    actions: dict[str, str] = {}
    constants: dict[str, list[str]] = {}
    trees = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text())
            trees.append((path.relative_to(ROOT).as_posix(), tree))
            constants.update(_module_strings(tree))
    for where, tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            if not ((name == "record" and owner in ("audit", "chain")) or name == "record_auth_event"):
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Name) and (where, arg.id) in WRAPPERS:
                continue
            strings = [c.value for c in ast.walk(arg) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            for ref in (n.id for n in ast.walk(arg) if isinstance(n, ast.Name)):
                strings += constants.get(ref, [])
            names = [s for s in strings if ACTION.match(s)]
            assert names, f"{where}:{node.lineno}: cannot tell which action {ast.unparse(arg)} is"
            for action in names:
                actions.setdefault(action, f"{where}:{node.lineno}")
    # Written by the data migration that sealed the unkeyed trail (broker/audit/legacy.py).
    actions["audit.keyed"] = "broker/audit/legacy.py"
    return actions


def event(action: str, data: dict | None = None, **fields) -> AuditEvent:
    values = {
        "seq": 7,
        "actor_name": "carol",
        "action": action,
        "target_type": "request",
        "target_id": "3",
        "role": "db-admin",
        "subject": "alice",
        "channel": "portal",
        "data": data or {},
    }
    return AuditEvent(**{**values, **fields})


def test_the_scan_finds_the_actions_it_should():
    actions = written_actions()
    # A literal, a constant (admin.changed), a conditional and a dict of final actions.
    for action in ("request.created", "admin.changed", "grant.revoke_failed", "grant.relinquished", "grant.failed"):
        assert action in actions, action
    assert len(actions) > 50


def test_every_action_the_broker_writes_has_a_sentence():
    missing = {action: where for action, where in written_actions().items() if action not in DESCRIBE}
    assert missing == {}, "give these actions a sentence in broker/audit/timeline.py"


@pytest.mark.parametrize("action", sorted(DESCRIBE))
@pytest.mark.parametrize("actor", ["carol", SYSTEM])
def test_no_sentence_shows_a_code_or_a_python_value_even_without_data(action, actor):
    entry = describe(event(action, actor_name=actor))
    text = f"{entry.title} {entry.detail}"
    assert entry.title
    assert action not in text
    assert not re.search(r"\b[a-z]+_[a-z]+\b", text), text  # no snake_case code
    assert "None" not in text and "{" not in text, text


def test_an_unknown_action_still_reads_as_words():
    assert describe(event("thing.was_done")).title == "Thing was done (carol)"


def test_the_requester_timeline_leaves_out_who_tried_their_approvers_link(
    client, requester, auditor, role, request_role
):
    from django.db import transaction

    from broker import audit
    from broker.models import Channel

    req = request_role(role)
    with transaction.atomic():
        audit.record(
            "approval_link.refused",
            actor=None,
            target=req,
            via=Channel.EMAIL,
            ip="203.0.113.9",
            subject="alice",
            data={"reason": "wrong_user", "method": "GET", "sent_to": "carol", "link": 1, "version": 1},
        )
    client.force_login(requester)
    mine = client.get(f"/requests/{req.pk}/").content.decode()
    assert "requested db-admin" in mine
    assert "email decision link" not in mine and "203.0.113.9" not in mine
    client.force_login(auditor)
    audited = client.get(f"/requests/{req.pk}/").content.decode()
    assert "An email decision link sent to carol was refused: opened by someone it was not sent to" in audited
    assert "203.0.113.9" in audited


def test_the_timeline_names_the_channel_in_words(client, requester, role, request_role):
    req = request_role(role)
    client.force_login(requester)
    page = client.get(f"/requests/{req.pk}/").content.decode()
    assert "via portal" not in page and "in the portal" in page


def test_the_audit_log_shows_each_event_as_a_sentence_beside_its_code(client, auditor, role, request_role):
    request_role(role)
    client.force_login(auditor)
    page = client.get("/audit/").content.decode()
    assert "alice requested db-admin for 1 h" in page
    assert "request.created" in page  # the code stays, for filtering by it


# --- End reasons -----------------------------------------------------------------------------------


def test_every_end_reason_has_its_own_words():
    codes = [code for code, _ in Grant.EndReason.choices]
    assert set(codes) == set(wording.END_REASONS)
    for attribute in ("badge", "why", "to_holder"):
        texts = [getattr(wording.END_REASONS[code], attribute) for code in codes]
        if attribute != "to_holder":  # "the role was retired" may read the same to the holder
            assert len(set(texts)) == len(texts), attribute


@pytest.mark.parametrize(
    ("status", "reason", "badge"),
    [
        ("revoked", "relinquished", "relinquished"),
        ("revoked", "revoked", "revoked"),
        ("revoked", "risk_signal", "revoked (risk signal)"),
        ("revoked", "eligibility_lost", "ended (no longer eligible)"),
        ("expired", "expiry", "expired"),
        ("expired", "not_activated", "ended (never switched on)"),
        ("revoking", "relinquished", "ending"),
        ("revoke_failed", "revoked", "removal failing"),
        ("active", None, "active"),
    ],
)
def test_a_grants_badge_says_why_it_ended(status, reason, badge):
    assert wording.grant_state(status, reason) == badge


@pytest.mark.parametrize(
    ("reason", "title"),
    [
        ("relinquished", "alice gave the role back early (relinquished)"),
        ("revoked", "Revoked by root"),
        ("risk_signal", "Revoked by a risk signal reported by root"),
        ("eligibility_lost", "Ended: alice is no longer eligible for db-admin"),
        ("role_retired", "Ended: the role db-admin was retired"),
    ],
)
def test_each_way_a_grant_ends_early_reads_differently_in_the_timeline(reason, title):
    action = "grant.relinquished" if reason == "relinquished" else "grant.revoked"
    by = "alice" if reason == "relinquished" else "root"
    entry = describe(event(action, {"end_reason": reason, "by": by}, target_type="grant", actor_name=by))
    assert entry.title == title


def test_a_relinquished_grant_is_shown_as_relinquished_not_revoked(client, requester, active_grant):
    from broker.models import Channel
    from grants import services as grants

    grant = active_grant()
    grants.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.PORTAL)
    client.force_login(requester)
    for url in (f"/grants/{grant.pk}/", "/grants/", f"/requests/{grant.request_id}/"):
        page = client.get(url).content.decode()
        assert ">relinquished</span>" in page, url
        assert ">revoked</span>" not in page, url
    detail = client.get(f"/grants/{grant.pk}/").content.decode()
    assert "(the holder gave it back early" in detail


def test_the_api_keeps_the_end_reason_code(client, requester, active_grant):
    from broker.models import Channel
    from grants import services as grants

    grant = active_grant()
    grants.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.PORTAL)
    client.force_login(requester)
    body = client.get(f"/api/v1/grants/{grant.pk}/").json()
    assert (body["status"], body["end_reason"]) == ("revoked", "relinquished")
