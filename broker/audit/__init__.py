"""The audit trail: the keyed hash chain (record, verify), checkpoints, exports, timelines and pages."""

from broker.audit.chain import SYSTEM, Verification, record, verify
from broker.audit.keys import GENESIS

__all__ = ["GENESIS", "SYSTEM", "Verification", "record", "verify"]
