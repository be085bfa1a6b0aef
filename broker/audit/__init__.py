"""The audit trail: the hash chain (record, verify), its exports, timelines and the audit log pages."""

from broker.audit.chain import GENESIS, SYSTEM, Entry, Verification, batched, record, record_many, verify

__all__ = ["GENESIS", "SYSTEM", "Entry", "Verification", "batched", "record", "record_many", "verify"]
