"""The audit hash chain: every change recorded in its transaction, and any tampering detected."""

import itertools

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from broker import audit
from broker.models import AuditEvent, Channel

pytestmark = pytest.mark.django_db


def write(n, actor=None):
    with transaction.atomic():
        return [
            audit.record("test.event", actor=actor, target=("thing", i), via=Channel.CLI, data={"i": i})
            for i in range(n)
        ]


def test_events_are_chained_by_hash(requester):
    first, second = write(2, actor=requester)
    assert first.prev_hash == audit.GENESIS
    assert second.prev_hash == first.hash
    assert (first.seq, second.seq) == (1, 2)
    assert first.actor_name == "alice"


def test_untouched_chain_verifies():
    write(5)
    result = audit.verify()
    assert result.ok and result.checked == 5 and result.head_seq == 5


def test_empty_trail_verifies():
    assert audit.verify().ok


def test_edited_payload_is_detected_at_that_event():
    events = write(5)
    AuditEvent.objects.filter(pk=events[2].pk).update(data={"i": 99})
    result = audit.verify()
    assert (result.ok, result.broken_seq) == (False, 3)
    assert "edited" in result.reason


def test_edited_actor_is_detected():
    events = write(3)
    AuditEvent.objects.filter(pk=events[1].pk).update(actor_name="someone-else")
    assert audit.verify().broken_seq == 2


def test_deleted_event_is_detected_at_the_next_one():
    events = write(5)
    AuditEvent.objects.filter(pk=events[1].pk).delete()
    result = audit.verify()
    assert result.broken_seq == 3
    assert "deleted" in result.reason


def test_deleted_newest_events_are_detected_through_the_head():
    events = write(4)
    AuditEvent.objects.filter(pk=events[3].pk).delete()
    result = audit.verify()
    assert not result.ok
    assert "newest events were deleted" in result.reason


def test_reordered_events_are_detected():
    events = write(4)
    a, b = events[1], events[2]
    AuditEvent.objects.filter(pk=a.pk).update(seq=-1)
    AuditEvent.objects.filter(pk=b.pk).update(seq=a.seq)
    AuditEvent.objects.filter(pk=a.pk).update(seq=b.seq)
    assert audit.verify().broken_seq == 2


def test_recording_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError, match=r"inside transaction\.atomic"):
        # pytest-django wraps tests in a transaction; leave it to see the real behaviour.
        connection.in_atomic_block = False
        try:
            audit.record("x", actor=None, target=None, via=Channel.CLI)
        finally:
            connection.in_atomic_block = True


def test_failed_audit_write_rolls_back_the_state_change(role, request_role, monkeypatch):
    from approvals.models import AccessRequest

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "record", broken)
    with pytest.raises(RuntimeError):
        request_role(role)
    assert not AccessRequest.objects.exists()


def test_unknown_channel_is_refused():
    with transaction.atomic(), pytest.raises(ValueError, match="channel"):
        audit.record("x", actor=None, target=None, via="carrier-pigeon")


def test_ip_addresses_are_normalised_and_garbage_dropped():
    with transaction.atomic():
        good = audit.record("x", actor=None, target=None, via=Channel.API, ip="2001:DB8::0:1")
        bad = audit.record("x", actor=None, target=None, via=Channel.API, ip="not-an-ip")
    assert (good.ip, bad.ip) == ("2001:db8::1", "")
    assert audit.verify().ok


def test_record_many_appends_in_order_under_one_lock_of_the_head():
    # The chain's very first event creates the head row, which takes a second lock once in the
    # life of a database; start from a chain that has a head, as every later batch does.
    with transaction.atomic():
        audit.record("x.first", actor=None, target=None, via=Channel.WORKER)
    entries = [
        audit.Entry("x.step", actor=None, target=("thing", i), via=Channel.WORKER, data={"i": i}) for i in range(5)
    ]
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        events = audit.record_many(entries)
    assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + 5))
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(events))
    assert sum("broker_audithead" in q["sql"] and "FOR UPDATE" in q["sql"] for q in queries) <= 1
    assert audit.verify().ok


def test_events_recorded_in_a_batched_block_are_chained_when_it_ends():
    with transaction.atomic(), audit.batched():
        first = audit.record("x.first", actor=None, target=None, via=Channel.WORKER)
        second = audit.record("x.second", actor=None, target=None, via=Channel.WORKER)
        assert first.seq is None and not AuditEvent.objects.filter(action__startswith="x.").exists()
    assert (second.seq, second.prev_hash) == (first.seq + 1, first.hash)
    assert audit.verify().ok


def test_a_batched_block_that_fails_appends_nothing():
    with pytest.raises(RuntimeError), transaction.atomic(), audit.batched():
        audit.record("x.lost", actor=None, target=None, via=Channel.WORKER)
        raise RuntimeError("the change failed")
    assert not AuditEvent.objects.filter(action="x.lost").exists()
    with transaction.atomic():
        audit.record("x.after", actor=None, target=None, via=Channel.WORKER)
    assert audit.verify().ok
