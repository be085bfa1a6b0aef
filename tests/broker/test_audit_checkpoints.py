"""Signed checkpoints of the head, outside the database: written on schedule, and checked by audit_verify."""

import io
import json
import socket
import tempfile
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import override_settings

from broker import audit
from broker.audit.checkpoints import read_checkpoints
from broker.audit.keys import Keyring
from broker.models import AuditEvent, AuditHead, Channel
from broker.tasks import audit_checkpoint, verify_audit

pytestmark = pytest.mark.django_db


def write(n, *, label="test.event"):
    with transaction.atomic():
        return [audit.record(label, actor=None, target=("thing", i), via=Channel.CLI, data={"i": i}) for i in range(n)]


@pytest.fixture
def checkpoint_file(tmp_path):
    path = tmp_path / "checkpoints.jsonl"
    with override_settings(AUDIT_CHECKPOINT_FILE=str(path)):
        yield path


def verify_command(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=err)
    except CommandError:
        return "failed", err.getvalue()
    return "ok", out.getvalue()


def delete_newest_and_move_the_head_back(keep: int) -> None:
    """Needs no key: remove the newest events and point the head at the last one kept."""
    AuditEvent.objects.filter(seq__gt=keep).delete()
    kept = AuditEvent.objects.get(seq=keep)
    AuditHead.objects.filter(pk=1).update(seq=kept.seq, hash=kept.hash)


def test_the_checkpoint_task_appends_a_signed_line_with_the_head(checkpoint_file):
    events = write(3)
    audit_checkpoint()
    write(1)
    audit_checkpoint()
    lines = [json.loads(line) for line in checkpoint_file.read_text().splitlines()]
    head = AuditHead.objects.get()
    assert [(c["seq"], c["hash"], c["key_id"]) for c in lines] == [(3, events[-1].hash, "1"), (4, head.hash, "1")]
    assert set(lines[0]) == {"type", "seq", "hash", "at", "key_id", "mac"}
    assert read_checkpoints(checkpoint_file, Keyring.from_settings()).count == 2


def test_checkpoints_of_an_intact_trail_all_match(checkpoint_file):
    write(3)
    audit_checkpoint()
    write(2)
    audit_checkpoint()
    outcome, message = verify_command("--checkpoints", str(checkpoint_file))
    assert outcome == "ok", message
    assert "2 checkpoint(s) match" in message


def test_deleting_the_newest_events_and_moving_the_head_back_is_caught_by_the_checkpoints(checkpoint_file):
    write(5)
    audit_checkpoint()
    delete_newest_and_move_the_head_back(keep=3)
    assert audit.verify().ok  # the chain alone cannot tell
    outcome, message = verify_command("--checkpoints", str(checkpoint_file))
    assert outcome == "failed"
    assert "saw event #5, but the trail ends at #3" in message


def test_a_tail_rewritten_after_a_checkpoint_is_caught_where_it_differs(checkpoint_file):
    write(5)
    audit_checkpoint()
    delete_newest_and_move_the_head_back(keep=3)
    write(3, label="test.rewritten")  # the broker MACs the new tail itself: each event verifies on its own
    assert audit.verify().ok
    outcome, message = verify_command("--checkpoints", str(checkpoint_file))
    assert outcome == "failed"
    assert "BROKEN at event #5" in message
    assert "differs from the one the checkpoint of" in message


def test_a_forged_checkpoint_line_fails_naming_the_line(checkpoint_file):
    write(2)
    audit_checkpoint()
    forged = json.loads(checkpoint_file.read_text()) | {"seq": 1}
    with checkpoint_file.open("a") as out:
        out.write(json.dumps(forged) + "\n")
    outcome, message = verify_command("--checkpoints", str(checkpoint_file))
    assert outcome == "failed"
    assert f"line 2 of the checkpoint file {checkpoint_file} does not verify (wrong MAC" in message


def test_the_scheduled_walk_compares_the_trail_with_the_checkpoint_file(checkpoint_file):
    write(4)
    audit_checkpoint()
    delete_newest_and_move_the_head_back(keep=2)
    result = verify_audit()
    assert (result["ok"], result["broken_seq"]) == (False, 3)


# --- Other destinations ---------------------------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self):
        Receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Receiver.bodies = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/checkpoints", Receiver.bodies
    server.shutdown()
    server.server_close()


def test_the_webhook_receives_the_signed_checkpoint(checkpoint_file, webhook):
    url, bodies = webhook
    write(2)
    with override_settings(AUDIT_CHECKPOINT_WEBHOOK_URL=url):
        result = audit_checkpoint()
    assert result["delivered"] == ["file", "webhook"]
    assert bodies == [checkpoint_file.read_text().strip().encode()]


def test_a_silent_webhook_times_out_without_stopping_the_other_destinations_or_the_trail(checkpoint_file):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with override_settings(
            AUDIT_CHECKPOINT_WEBHOOK_URL=url, AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT=timedelta(seconds=0.2)
        ):
            result = audit_checkpoint()
    assert (result["delivered"], result["failed"]) == (["file"], ["webhook"])
    write(1)  # the trail goes on
    assert audit.verify().ok


def test_syslog_gets_the_checkpoint_line():
    with tempfile.TemporaryDirectory(dir="/tmp") as folder, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        path = str(Path(folder) / "log")  # a socket's path must stay short: not under pytest's tmp_path
        syslog.bind(path)
        syslog.settimeout(5)
        write(1)
        with override_settings(AUDIT_CHECKPOINT_FILE="", AUDIT_CHECKPOINT_SYSLOG=path):
            result = audit_checkpoint()
        message = syslog.recv(4096).decode()
    assert result["delivered"] == ["syslog"]
    assert message.startswith("<86>broker-audit: {")
    assert json.loads(message.partition(": ")[2])["seq"] == 1


def test_check_deploy_warns_when_checkpoints_go_nowhere():
    from broker.audit.checkpoints import check_checkpoint_destination

    with override_settings(AUDIT_CHECKPOINT_FILE="", AUDIT_CHECKPOINT_SYSLOG="", AUDIT_CHECKPOINT_WEBHOOK_URL=""):
        assert [w.id for w in check_checkpoint_destination(None)] == ["broker.W001"]
    with override_settings(AUDIT_CHECKPOINT_FILE="/var/log/broker/checkpoints.jsonl"):
        assert check_checkpoint_destination(None) == []
