"""The audit trail: the keyed hash chain (record, verify), checkpoints, exports, timelines and pages."""

from broker.audit.chain import SYSTEM, Entry, Verification, batched, record, record_many, verify
from broker.audit.keys import GENESIS

__all__ = ["GENESIS", "SYSTEM", "Entry", "Verification", "batched", "record", "record_many", "verify"]
