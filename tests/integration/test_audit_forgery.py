"""The security review's attack on the audit trail, replayed on PostgreSQL with SQL and audit_verify.

Someone who can write to the database but does not hold AUDIT_KEY edits an event, recomputes every
later hash and the head; or deletes the newest events and moves the head back. audit_verify (a
separate process, as an operator runs it) must fail, naming the first forged event or the
checkpoint that no longer matches.
"""

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC

import pytest
from django.conf import settings
from django.db import connection

from approvals import services as approvals
from broker.models import Channel
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory
from tests.integration.conftest import ROOT, Worker, database_url, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

COLUMNS = "id, seq, at, actor_name, action, target_type, target_id, role, subject, channel, ip, data, prev_hash"


def manage(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "broker.settings",
        "DATABASE_URL": database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "localhost",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture
def story(transactional_db):
    """Three people request a role that needs two approvals, and carol gives one: six events.

    The requests stay pending, so the worker adds no events of its own while the tests run.
    """
    carol = UserFactory(username="carol")
    role = RoleFactory(slug="db-admin")
    StageFactory(role=role, required=2, users=[carol, UserFactory(username="erin")])
    for name in ("alice", "bob", "dave"):
        person = UserFactory(username=name)
        EligibilityFactory(role=role, user=person)
        req = approvals.request_create(requester=person, role=role, justification="routine", via=Channel.API)
        approvals.request_approve(request_id=req.pk, approver=carol, via=Channel.API)


def unkeyed_hash(row: tuple, prev: str) -> str:
    """Plain SHA-256 over the event's content: all that can be computed without the key."""
    _id, seq, at, actor, action, target_type, target_id, role, subject, channel, ip, data, _prev = row
    content = {
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "role": role,
        "subject": subject,
        "channel": channel,
        "ip": ip,
        "data": json.loads(data) if isinstance(data, str) else data,
        "prev": prev,
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def forge(cursor, victim_id: int) -> None:
    """Edit the event by SQL, then recompute every later hash and the head without the key."""
    cursor.execute(
        "UPDATE broker_auditevent SET data = jsonb_set(data, '{justification}', '\"nothing to see\"') WHERE id = %s",
        [victim_id],
    )
    cursor.execute("SELECT seq FROM broker_auditevent WHERE id = %s", [victim_id])
    (victim_seq,) = cursor.fetchone()
    cursor.execute("SELECT hash FROM broker_auditevent WHERE seq = %s", [victim_seq - 1])
    (prev,) = cursor.fetchone()
    cursor.execute(f"SELECT {COLUMNS} FROM broker_auditevent WHERE seq >= %s ORDER BY seq", [victim_seq])
    for row in cursor.fetchall():
        new_hash = unkeyed_hash(row, prev)
        cursor.execute("UPDATE broker_auditevent SET prev_hash = %s, hash = %s WHERE id = %s", [prev, new_hash, row[0]])
        prev = new_hash
    cursor.execute("UPDATE broker_audithead SET hash = %s WHERE id = 1", [prev])


def test_an_event_rewritten_by_sql_without_the_key_is_named_by_audit_verify(story):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, seq FROM broker_auditevent WHERE action = 'request.created' ORDER BY seq LIMIT 1 OFFSET 1"
        )
        victim_id, victim_seq = cursor.fetchone()
        forge(cursor, victim_id)

    result = manage("audit_verify")

    assert result.returncode == 1, result.stdout
    assert f"BROKEN at event #{victim_seq} (row id {victim_id})" in result.stderr
    assert "the event was edited" in result.stderr


def test_deleting_the_newest_events_and_rewriting_the_head_is_caught_with_the_checkpoints(story, tmp_path):
    checkpoints = tmp_path / "checkpoints.jsonl"
    worker = Worker(tmp_path, sweep_interval="10s")
    worker.env.update(AUDIT_CHECKPOINT_FILE=str(checkpoints), AUDIT_CHECKPOINT_INTERVAL="1s")
    worker.start()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT seq FROM broker_audithead")
            (head_seq,) = cursor.fetchone()
        # The worker's scheduler writes a checkpoint of the head every second.
        wait_for(
            lambda: checkpoints.exists() and f'"seq":{head_seq},' in checkpoints.read_text(),
            timeout=30,
            what="a checkpoint of the head from the worker",
        )
    finally:
        worker.stop()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM broker_auditevent WHERE seq > %s", [head_seq - 3])
        cursor.execute(
            "UPDATE broker_audithead SET seq = e.seq, hash = e.hash FROM broker_auditevent e WHERE e.seq = %s",
            [head_seq - 3],
        )
    assert manage("audit_verify").returncode == 0  # the chain alone cannot see it: no event was edited

    result = manage("audit_verify", "--checkpoints", str(checkpoints))

    assert result.returncode == 1, result.stdout
    assert f"saw event #{head_seq}, but the trail ends at #{head_seq - 3}" in result.stderr
    assert "the newest events were deleted and the head rewritten" in result.stderr
