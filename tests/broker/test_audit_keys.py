"""The keyed chain: a rewrite without the key is caught, a wrong key names the first event, keys rotate."""

import hashlib
import io
import json
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from broker import audit
from broker.audit.keys import GENESIS, Keyring, canonical
from broker.audit.legacy import seal_unkeyed
from broker.models import AuditEvent, AuditHead, Channel

pytestmark = pytest.mark.django_db

KEY_1 = "first-audit-key-for-tests-0123456789abcdef"
KEY_2 = "second-audit-key-for-tests-0123456789abcdef"


def write(n, *, start=0):
    with transaction.atomic():
        return [
            audit.record("test.event", actor=None, target=("thing", i), via=Channel.CLI, data={"i": i})
            for i in range(start, start + n)
        ]


def unkeyed_hash(event: AuditEvent, prev: str) -> str:
    """The hash as an attacker without the key computes it: plain SHA-256 over the content (the old scheme)."""
    content = {
        "seq": event.seq,
        "at": event.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": event.actor_name,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "role": event.role,
        "subject": event.subject,
        "channel": event.channel,
        "ip": event.ip,
        "data": event.data,
        "prev": prev,
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def rewrite_without_the_key(victim_seq: int, data: dict, *, drop_key_ids: bool = False) -> None:
    """What the security review did: edit an event, recompute every later hash and the head.

    ``drop_key_ids``: also mark every event unkeyed, recomputing the whole chain from the first event.
    """
    AuditEvent.objects.filter(seq=victim_seq).update(data=data)
    first = 1 if drop_key_ids else victim_seq
    prev = AuditEvent.objects.get(seq=first - 1).hash if first > 1 else GENESIS
    for event in AuditEvent.objects.filter(seq__gte=first).order_by("seq"):
        new_hash = unkeyed_hash(event, prev)
        changes = {"prev_hash": prev, "hash": new_hash} | ({"key_id": ""} if drop_key_ids else {})
        AuditEvent.objects.filter(pk=event.pk).update(**changes)
        prev = new_hash
    last = AuditEvent.objects.order_by("-seq").first()
    AuditHead.objects.filter(pk=1).update(seq=last.seq, hash=last.hash)


def verify_command(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=err)
    except CommandError:
        return "failed", err.getvalue()
    return "ok", out.getvalue()


def test_each_event_names_its_key_and_carries_an_hmac_not_a_plain_hash():
    (event,) = write(1)
    assert event.key_id == "1"
    assert event.hash != unkeyed_hash(event, GENESIS)


def test_a_rewrite_without_the_key_is_caught_at_the_first_forged_event():
    write(6)
    rewrite_without_the_key(3, {"i": "nothing to see"})
    result = audit.verify()
    assert (result.ok, result.broken_seq) == (False, 3)
    assert "edited" in result.reason


def test_marking_rewritten_events_as_unkeyed_does_not_help_the_forger():
    write(6)
    rewrite_without_the_key(3, {"i": "nothing to see"}, drop_key_ids=True)
    result = audit.verify()
    assert not result.ok
    assert "no keyed event after them" in result.reason


def test_an_unkeyed_event_after_a_keyed_one_is_refused():
    events = write(3)
    AuditEvent.objects.filter(pk=events[2].pk).update(key_id="", hash=unkeyed_hash(events[2], events[1].hash))
    result = audit.verify()
    assert result.broken_seq == 3
    assert "unkeyed events can only come before the first keyed one" in result.reason


def test_audit_verify_with_a_wrong_key_fails_naming_the_first_event():
    events = write(3)
    with override_settings(AUDIT_KEY="a-wrong-key-that-is-long-enough-0123456789"):
        outcome, message = verify_command()
    assert outcome == "failed"
    assert f"BROKEN at event #1 (row id {events[0].pk})" in message
    assert "under key id '1'" in message


def test_a_forged_key_id_is_a_failure_naming_the_event():
    write(3)
    AuditEvent.objects.filter(seq=2).update(key_id="9")
    result = audit.verify()
    assert result.broken_seq == 2
    assert "key id '9'" in result.reason and "AUDIT_OLD_KEYS" in result.reason


def test_events_written_under_a_rotated_key_verify_with_the_old_key_listed():
    with override_settings(AUDIT_KEY=KEY_1, AUDIT_KEY_ID="1", AUDIT_OLD_KEYS={}):
        write(3)
    with override_settings(AUDIT_KEY=KEY_2, AUDIT_KEY_ID="2", AUDIT_OLD_KEYS={"1": KEY_1}):
        write(2, start=3)
        result = audit.verify()
    assert result.ok, result.reason
    assert (result.checked, result.key_ids) == (5, ("1", "2"))
    assert list(AuditEvent.objects.order_by("seq").values_list("key_id", flat=True)) == ["1", "1", "1", "2", "2"]


def test_without_the_old_key_the_first_event_of_the_old_key_fails():
    with override_settings(AUDIT_KEY=KEY_1, AUDIT_KEY_ID="1", AUDIT_OLD_KEYS={}):
        write(3)
    with override_settings(AUDIT_KEY=KEY_2, AUDIT_KEY_ID="2", AUDIT_OLD_KEYS={}):
        write(2, start=3)
        outcome, message = verify_command()
    assert outcome == "failed"
    assert "BROKEN at event #1" in message
    assert "key id '1', which is neither AUDIT_KEY_ID nor in AUDIT_OLD_KEYS" in message


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    text=st.text(),
    number=st.integers(min_value=0, max_value=2**53),
    data=st.dictionaries(st.text(), st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.none())),
)
def test_the_canonical_bytes_are_exactly_what_json_dumps_gives(text, number, data):
    at = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC)
    fields = [number, at, text, text[::-1], "request", str(number), text, text, "api", "", data, "ab" * 32]
    content = dict(
        zip(
            ["seq", "at", "actor", "action", "target_type", "target_id", "role", "subject", "channel", "ip", "data"],
            fields[:11],
            strict=True,
        ),
        prev=fields[11],
        key_id="k1",
    )
    content["at"] = "2026-03-02T09:00:00.123456+00:00"
    expected = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical(*fields, "k1") == expected


# --- A trail from before the key ----------------------------------------------------------------------


def write_unkeyed(n):
    """Events as the broker wrote them before the key existed (no key id, plain SHA-256)."""
    events = write(n)
    prev = GENESIS
    for event in events:
        event.hash = unkeyed_hash(event, prev)
        AuditEvent.objects.filter(pk=event.pk).update(prev_hash=prev, hash=event.hash, key_id="")
        prev = event.hash
    AuditHead.objects.filter(pk=1).update(hash=prev)
    return events


def seal():
    with transaction.atomic():
        return seal_unkeyed(AuditEvent, AuditHead, keyring=Keyring.from_settings(), now=timezone.now())


def test_a_trail_from_before_the_key_does_not_verify_until_it_is_sealed():
    write_unkeyed(4)
    assert "no keyed event after them" in audit.verify().reason


def test_sealing_keeps_the_old_hashes_and_the_trail_verifies():
    events = write_unkeyed(4)
    data = seal()
    assert data == {"unkeyed_events": 4, "unkeyed_head": events[-1].hash, "unkeyed_verified": True}
    assert AuditEvent.objects.get(seq=2).hash == events[1].hash
    write(2)
    result = audit.verify()
    assert result.ok, result.reason
    assert (result.checked, result.unkeyed) == (7, 4)


def test_a_rewrite_of_sealed_unkeyed_events_is_caught_at_the_seal():
    write_unkeyed(4)
    seal()
    AuditEvent.objects.filter(seq=2).update(data={"i": "rewritten"})
    prev = AuditEvent.objects.get(seq=1).hash
    for event in AuditEvent.objects.filter(seq__in=[2, 3, 4]).order_by("seq"):
        new_hash = unkeyed_hash(event, prev)
        AuditEvent.objects.filter(pk=event.pk).update(prev_hash=prev, hash=new_hash)
        prev = new_hash
    result = audit.verify()
    assert result.broken_seq == 5  # the seal's link no longer matches
    assert "link to the previous event" in result.reason


def test_sealing_a_broken_old_trail_records_where_it_broke_and_keeps_it_broken():
    write_unkeyed(4)
    AuditEvent.objects.filter(seq=3).update(data={"i": "edited before the upgrade"})
    data = seal()
    assert (data["unkeyed_verified"], data["unkeyed_broken_at"]) == (False, 3)
    assert audit.verify().broken_seq == 3


def test_a_keyed_trail_is_never_sealed_again():
    write(2)
    assert seal() is None
    assert AuditEvent.objects.count() == 2


def test_an_event_written_on_the_exact_second_verifies(clock):
    (event,) = write(1)
    assert event.at.microsecond == 0  # stored without a fraction on SQLite
    assert audit.verify().ok


def test_verification_does_not_depend_on_the_machines_time_zone(monkeypatch):
    import time

    write(2)
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert audit.verify().ok
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
