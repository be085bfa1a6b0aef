"""Sealing a trail written before the audit key existed (a data migration runs this once).

Events written before the upgrade carry plain SHA-256 hashes, which anyone can recompute. They are
left exactly as they are (so the head hashes and exports taken before the upgrade still match) and
sealed instead: the upgrade walks them, then appends one keyed event, ``audit.keyed``, whose MAC
covers the hash of the newest of them and which records how many there were and whether they
verified. From then on the walk accepts unkeyed events only before the first keyed event, and a
trail of unkeyed events only fails: rewriting an old event changes every hash after it, up to the
seal, and the seal cannot be recomputed without the key.
"""

from __future__ import annotations

from datetime import datetime

from broker.audit.keys import GENESIS, Keyring, canonical, mac
from broker.audit.walk import ROW, walk

ACTION = "audit.keyed"


def seal_unkeyed(event_model, head_model, *, keyring: Keyring, now: datetime) -> dict | None:
    """Append the sealing event if the trail has unkeyed events and no keyed one; return its data.

    Takes the model classes, so that the migration can pass its historical ones.
    """
    head = head_model.objects.select_for_update().filter(pk=1).first()
    if head is None or head.seq == 0 or event_model.objects.exclude(key_id="").exists():
        return None
    rows = event_model.objects.order_by("seq").values_list(*ROW).iterator(chunk_size=5000)
    walked = walk(rows, keys=keyring.keys, seal_required=False)
    data = {"unkeyed_events": head.seq, "unkeyed_head": head.hash, "unkeyed_verified": walked.ok}
    if walked.ok and (walked.last_seq, walked.last_hash) != (head.seq, head.hash):
        data["unkeyed_verified"] = False
        data["unkeyed_broken_at"] = walked.last_seq + 1
        data["unkeyed_broken_reason"] = "the chain head does not match the newest event"
    elif not walked.ok:
        data["unkeyed_broken_at"] = walked.broken_seq
        data["unkeyed_broken_reason"] = walked.reason
    seq = head.seq + 1
    fields = {
        "seq": seq,
        "at": now,
        "actor_name": "system",
        "action": ACTION,
        "target_type": "",
        "target_id": "",
        "role": "",
        "subject": "",
        "channel": "cli",
        "ip": "",
        "data": data,
        "prev_hash": head.hash or GENESIS,
        "key_id": keyring.key_id,
    }
    payload = canonical(*(fields[name] for name in ROW[1:12]), fields["prev_hash"], keyring.key_id)
    event = event_model.objects.create(**fields, hash=mac(keyring.current, payload))
    head.seq, head.hash = event.seq, event.hash
    head.save(update_fields=["seq", "hash"])
    return data
