"""What the database knows, read at scrape time: correct whatever process or host did the work.

Grants by state, grants overdue for removal, the revocation lag of every grant that expired (a
histogram built from ``ended_at - expires_at`` in one aggregate query), requests by role and
outcome, the audit chain's stored verification, the archive boundary, the worker heartbeat and the
outbox. Nothing here is counted in memory, so several gunicorn workers, a Celery worker on
another host and restarts all give the same answer; the price is a few aggregate queries per
scrape (measured in bench/metrics_scrape.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db import DatabaseError
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from approvals.models import AccessRequest
from approvals.rightsizing import unused_eligibilities
from broker.audit.boundary import current_boundary
from broker.audit.status import stored_verification
from broker.models import AuditHead, Heartbeat, Role
from grants.models import Grant
from notifications.models import Notification

log = logging.getLogger(__name__)

# Seconds between expires_at and the confirmed removal: the broker's own runs are well under a
# second (docs/architecture.md); the upper buckets show an outage.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)

S = Grant.Status


def _ts(value: datetime) -> float:
    return value.timestamp()


class DatabaseFigures:
    """A prometheus-client collector: each scrape reads the figures afresh."""

    def collect(self) -> Iterator:
        start = time.perf_counter()
        up = 1
        figures: list = []
        try:
            figures = list(self._figures(timezone.now()))
        except DatabaseError as exc:
            up = 0
            log.warning("metrics: the database cannot be read: %s", type(exc).__name__)
        yield from figures
        yield GaugeMetricFamily("broker_database_up", "1 when the database answered this scrape's queries.", value=up)
        yield GaugeMetricFamily(
            "broker_figures_read_seconds",
            "Time this scrape spent reading the figures from the database.",
            value=time.perf_counter() - start,
        )

    def _figures(self, now: datetime) -> Iterator:
        yield from self._grants(now)
        yield from self._requests()
        yield from self._audit(now)
        yield from self._heartbeat(now)
        yield from self._outbox()
        yield self._unused(now)

    def _grants(self, now: datetime) -> Iterator:
        by_status = dict(Grant.objects.order_by().values_list("status").annotate(n=Count("pk")))
        grants = GaugeMetricFamily("broker_grants", "Grants by state.", labels=["status"])
        for status in S.values:
            grants.add_metric([status], by_status.get(status, 0))
        yield grants
        yield GaugeMetricFamily(
            "broker_grants_active", "Grants active now (the holder has the access).", value=by_status.get(S.ACTIVE, 0)
        )
        overdue = Grant.objects.filter(status__in=[S.ACTIVE, S.REVOKING], expires_at__lte=now).count()
        yield GaugeMetricFamily(
            "broker_grants_overdue",
            "Grants past expires_at whose removal is not confirmed yet (active or revoking): should be 0.",
            value=overdue,
        )
        yield GaugeMetricFamily(
            "broker_grants_revoke_failed",
            "Grants whose removal ran out of retries (never effective, but the target may still give access).",
            value=by_status.get(S.REVOKE_FAILED, 0),
        )
        late = Grant.objects.filter(status=S.SCHEDULED, starts_at__lte=now - timedelta(minutes=1)).count()
        yield GaugeMetricFamily(
            "broker_grants_activation_overdue", "Scheduled grants whose start passed over a minute ago.", value=late
        )
        yield self._lag()

    def _lag(self) -> HistogramMetricFamily:
        lag = ExpressionWrapper(F("ended_at") - F("expires_at"), output_field=DurationField())
        buckets = {
            f"le_{i}": Count("pk", filter=Q(ended_at__lte=F("expires_at") + timedelta(seconds=bound)))
            for i, bound in enumerate(LAG_BUCKETS)
        }
        row = Grant.objects.filter(
            status=S.EXPIRED, end_reason=Grant.EndReason.EXPIRY, ended_at__isnull=False
        ).aggregate(count=Count("pk"), total=Sum(lag), **buckets)
        histogram = HistogramMetricFamily(
            "broker_revocation_lag_seconds",
            "Seconds from a grant's expires_at to the confirmed removal of its access (every grant that expired).",
        )
        total = row["total"].total_seconds() if row["total"] is not None else 0.0
        histogram.add_metric(
            [],
            [(floatToGoString(bound), row[f"le_{i}"]) for i, bound in enumerate(LAG_BUCKETS)]
            + [("+Inf", row["count"])],
            total,
        )
        return histogram

    def _requests(self) -> Iterator:
        slugs = dict(Role.objects.values_list("pk", "slug"))
        rows = AccessRequest.objects.order_by().values_list("role_id", "status").annotate(n=Count("pk"))
        pending = GaugeMetricFamily(
            "broker_requests_pending", "Requests waiting for a decision, by role.", labels=["role"]
        )
        created = CounterMetricFamily("broker_requests_created", "Requests made, by role.", labels=["role"])
        decided = CounterMetricFamily(
            "broker_requests_decided",
            "Requests that left pending, by role and outcome (approved, denied, cancelled, expired).",
            labels=["role", "outcome"],
        )
        made: dict[str, int] = {}
        waiting: dict[str, int] = {}
        for role_id, status, n in rows:
            slug = slugs.get(role_id, str(role_id))
            made[slug] = made.get(slug, 0) + n
            if status == AccessRequest.Status.PENDING:
                waiting[slug] = waiting.get(slug, 0) + n
            else:
                decided.add_metric([slug, status], n)
        for slug in sorted(set(slugs.values()) | set(made)):
            created.add_metric([slug], made.get(slug, 0))
            pending.add_metric([slug], waiting.get(slug, 0))
        yield from (pending, created, decided)

    def _audit(self, now: datetime) -> Iterator:
        head = AuditHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
        yield GaugeMetricFamily("broker_audit_head_seq", "Sequence number of the newest audit event.", value=head)
        edge = current_boundary()
        yield GaugeMetricFamily(
            "broker_audit_archived_seq", "The newest audit event moved to an archive (0: none).", value=edge.seq
        )
        stored, authentic = stored_verification()
        ok = edge.ok and (stored is None or (authentic and stored.ok))
        yield GaugeMetricFamily(
            "broker_audit_chain_ok",
            "0 when the audit chain is known to be broken (the scheduled walk found a break, or its stored "
            "outcome or the archive boundary lacks a valid MAC); 1 otherwise.",
            value=int(ok),
        )
        if stored is not None:
            yield GaugeMetricFamily(
                "broker_audit_verified_seq", "The last audit event the scheduled walk verified.", value=stored.seq
            )
            yield GaugeMetricFamily(
                "broker_audit_last_verification_timestamp_seconds",
                "When the scheduled walk of the whole chain last ran (Unix time).",
                value=_ts(stored.at),
            )
            yield GaugeMetricFamily(
                "broker_audit_last_verification_age_seconds",
                "Seconds since the scheduled walk of the whole chain last ran.",
                value=(now - stored.at).total_seconds(),
            )

    def _heartbeat(self, now: datetime) -> Iterator:
        beat = Heartbeat.objects.filter(name="worker").first()
        if beat is None:
            return
        yield GaugeMetricFamily(
            "broker_worker_heartbeat_timestamp_seconds",
            "When a worker last ran the heartbeat beat queued (Unix time).",
            value=_ts(beat.at),
        )
        yield GaugeMetricFamily(
            "broker_worker_heartbeat_age_seconds", "Seconds since a worker last ran the heartbeat.",
            value=(now - beat.at).total_seconds(),
        )  # fmt: skip
        if beat.queued_at is not None:
            yield GaugeMetricFamily(
                "broker_worker_heartbeat_queue_seconds",
                "How long the last heartbeat waited in the queue before a worker ran it.",
                value=max(0.0, (beat.at - beat.queued_at).total_seconds()),
            )

    def _unused(self, now: datetime) -> GaugeMetricFamily:
        """Right-sizing: eligibilities nobody used within their role's unused_after (approvals.rightsizing)."""
        family = GaugeMetricFamily(
            "broker_unused_eligibilities",
            "Eligibilities (a user or a group for a role) nobody used within the role's unused_after.",
            labels=["role"],
        )
        counts: dict[str, int] = {}
        for unused in unused_eligibilities(now=now):
            counts[unused.role.slug] = counts.get(unused.role.slug, 0) + 1
        for slug, count in sorted(counts.items()):
            family.add_metric([slug], count)
        return family

    def _outbox(self) -> Iterator:
        rows = Notification.objects.order_by().values_list("status").annotate(n=Count("pk"))
        outbox = GaugeMetricFamily("broker_notifications", "Messages in the outbox, by state.", labels=["status"])
        for status, n in rows:
            outbox.add_metric([status], n)
        yield outbox
