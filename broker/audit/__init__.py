"""The audit trail: the hash chain (record, verify), its exports, timelines and the audit log pages."""

from broker.audit.chain import GENESIS, SYSTEM, Verification, record, verify

__all__ = ["GENESIS", "SYSTEM", "Verification", "record", "verify"]
