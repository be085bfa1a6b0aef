"""Reconciliation: compare who holds each target with who has an effective grant for it.

Standing access that no grant explains is *drift*: someone was added by hand, or a removal was
undone elsewhere. For targets of roles marked ``authoritative: true`` the broker removes such
members; for the others it records the drift once (``drift.detected``) so that auditors see it.
An effective grant whose access is missing from the target is re-granted (``drift.restored``):
the broker promised that access until ``expires_at``.

People with a grant in flight (scheduled, active but overdue, revoking, revoke_failed) are left alone: the
grant's own lifecycle is acting on them, and both would otherwise race.

Each run keeps its findings per target (``TargetReport``, the latest only): what ``GET
reconciliation/`` answers. ``reconcile_run`` is a run someone asked for (the API), audited with
who asked.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from broker import audit
from broker.models import AuditEvent, Channel, Role
from grants.connectors import connector_for, connector_for_grant, set_access
from grants.events import drift_event, grant_event
from grants.models import AccessLock, Grant, TargetReport

log = logging.getLogger(__name__)
User = get_user_model()


@dataclass
class Report:
    targets: int = 0
    removed: list[str] = field(default_factory=list)
    detected: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scope:
    """A live role, on one of its resources for a role with resources ("" otherwise)."""

    role: Role
    resource: str = ""

    def connector(self):
        return connector_for(self.role, self.resource)


def _grants_of(scopes: list[Scope]) -> Q:
    """The grants of these scopes: of each role, on its resource."""
    wanted = Q(pk__in=[])
    for scope in scopes:
        wanted |= Q(role=scope.role, resource=scope.resource)
    return wanted


def _targets() -> dict[tuple, list[Scope]]:
    """Live roles grouped by the piece of access they manage (two roles may share one group).

    A role with resources manages one piece per resource: each named resource is its own target
    (a resource given only by a pattern cannot be listed, and is not reconciled).
    """
    groups: dict[tuple, list[Scope]] = defaultdict(list)
    for role in Role.objects.live():
        for resource in role.resource_names if role.has_resources else [""]:
            scope = Scope(role, resource)
            try:
                groups[scope.connector().target_key()].append(scope)
            except Exception as exc:  # noqa: BLE001 - an unknown connector is reported, not fatal
                log.warning("reconcile: role %s: %s", role.slug, exc)
    return groups


def reconcile(*, now: datetime | None = None) -> Report:
    now = now or timezone.now()
    report = Report()
    seen = []
    for key, scopes in _targets().items():
        connector = scopes[0].connector()
        seen.append(_key(key))
        before = _lengths(report)
        holders = None
        try:
            holders = connector.holders()
        except Exception as exc:  # noqa: BLE001 - a target that cannot be read is reported and skipped
            report.errors.append(f"{scopes[0].role.slug}: {exc}")
        if holders is not None:
            report.targets += 1
            grants = Grant.objects.filter(_grants_of(scopes))
            # Usernames only: a target with 100,000 holders must not load 100,000 grants and users.
            entitled = set(grants.effective(now).values_list("user__username", flat=True).iterator())
            # Grants in flight (scheduled, overdue, being removed): their own lifecycle acts on these people.
            busy = set(grants.unfinished().values_list("user__username", flat=True).iterator()) - entitled
            authoritative = any(s.role.authoritative for s in scopes)
            for username in sorted(holders - entitled - busy):
                _extra(username, scopes, authoritative=authoritative, now=now, report=report)
            for username in sorted(entitled - holders - busy):
                _missing(username, scopes, now=now, report=report)
        _keep(key, connector, [s.role for s in scopes], holders, report, before, now)
    # Targets no live role points at any more (a retired role, a changed config) have no report.
    TargetReport.objects.exclude(key__in=seen).delete()
    return report


def reconcile_run(*, actor: AbstractBaseUser, via: str, ip: str | None = None) -> Report:
    """A run someone asked for, now (the periodic one runs every RECONCILE_INTERVAL); audited."""
    report = reconcile()
    with transaction.atomic():
        audit.record(
            "reconcile.run",
            actor=actor,
            target=("reconciliation", ""),
            via=via,
            ip=ip,
            data={
                "targets": report.targets,
                "removed": report.removed,
                "detected": report.detected,
                "restored": report.restored,
                "errors": report.errors,
            },
        )
    return report


# --- The latest report per target ----------------------------------------------------------------

_FINDINGS = ("removed", "detected", "restored", "errors")


def _key(target_key: tuple) -> str:
    return hashlib.sha256(repr(target_key).encode()).hexdigest()


def _lengths(report: Report) -> dict[str, int]:
    return {name: len(getattr(report, name)) for name in _FINDINGS}


def _keep(
    target_key: tuple, connector, roles: list[Role], holders: set[str] | None, report: Report, before, now
) -> None:
    """Replace the target's report with this run's findings (those added to ``report`` since ``before``)."""
    found = {name: getattr(report, name)[before[name] :] for name in _FINDINGS}
    # Findings read "role/username"; a target's report names the people (its roles are listed beside).
    people = {name: [item.split("/", 1)[-1] for item in found[name]] for name in ("removed", "detected", "restored")}
    if found["errors"]:
        outcome = TargetReport.Outcome.ERROR
    elif holders is None:
        outcome = TargetReport.Outcome.NOT_CHECKED
    elif any(people.values()):
        outcome = TargetReport.Outcome.DRIFT
    else:
        outcome = TargetReport.Outcome.IN_SYNC
    values = {
        "target": connector.describe()[:500],
        "connector": connector.name,
        "roles": sorted({role.slug for role in roles}),
        "authoritative": any(role.authoritative for role in roles),
        "outcome": outcome,
        "checked_at": now,
        "holders": len(holders) if holders is not None else None,
        **people,
        "errors": found["errors"],
    }
    key = _key(target_key)
    try:
        with transaction.atomic():
            TargetReport.objects.update_or_create(key=key, defaults=values)
    except IntegrityError:  # a concurrent run created it first: this run's findings replace its
        TargetReport.objects.filter(key=key).update(**values)


def _extra(username: str, scopes: list[Scope], *, authoritative: bool, now: datetime, report: Report) -> None:
    user = User.objects.filter(username=username).first()
    if user is None:
        return
    role, resource = scopes[0].role, scopes[0].resource
    on = {"resource": resource} if resource else {}
    with transaction.atomic():
        # Lock this person's grants for the target and look again: an activation that started
        # after the snapshot holds these rows while it calls the connector.
        live = list(
            Grant.objects.select_for_update().live().filter(_grants_of(scopes), user=user).values_list("pk", flat=True)
        )
        if live:
            return
        facts = {"role": role.slug, "subject": username}
        if authoritative:
            try:
                connector = scopes[0].connector()
                AccessLock.objects.hold(connector.target_key(), user)
                if Grant.objects.live().filter(_grants_of(scopes), user=user).exists():
                    return  # activated meanwhile (its activation held the access lock)
                set_access(connector, user, present=False, event=drift_event(role, user, now, resource=resource))
            except Exception as exc:  # noqa: BLE001 - reported and retried at the next run
                report.errors.append(f"{role.slug}/{username}: {exc}")
                return
            audit.record(
                "drift.removed",
                actor=None,
                target=role,
                via=Channel.WORKER,
                **facts,
                data={"reason": "member without an effective grant on an authoritative target", **on},
            )
            report.removed.append(f"{role.slug}/{username}")
            log.warning("reconcile: removed %s from %s: no effective grant", username, role.slug)
            return
        already = AuditEvent.objects.filter(action="drift.detected", role=role.slug, subject=username)
        if already.filter(at__gte=_last_grant_end(user, scopes)).exists():
            return
        audit.record(
            "drift.detected",
            actor=None,
            target=role,
            via=Channel.WORKER,
            **facts,
            data={"reason": "member without an effective grant (target not authoritative: left in place)", **on},
        )
        report.detected.append(f"{role.slug}/{username}")


def _last_grant_end(user, scopes: list[Scope]) -> datetime:
    """Drift is reported again only if it reappears after a later grant of this person ended."""
    last = (
        Grant.objects.filter(_grants_of(scopes), user=user, ended_at__isnull=False)
        .order_by("-ended_at")
        .values_list("ended_at", flat=True)
        .first()
    )
    return last or datetime.min.replace(tzinfo=UTC)


def _missing(username: str, scopes: list[Scope], *, now: datetime, report: Report) -> None:
    with transaction.atomic():
        grant = (
            Grant.objects.select_for_update(of=("self",))
            .select_related("user", "role")
            .filter(_grants_of(scopes), user__username=username)
            .effective(now)
            .first()
        )
        if grant is None:
            return
        try:
            connector = connector_for_grant(grant)
            AccessLock.objects.hold(connector.target_key(), grant.user)
            event = grant_event(grant, "grant.activated", operation=f"restore:{now.isoformat()}")
            set_access(connector, grant.user, present=True, event=event)
        except Exception as exc:  # noqa: BLE001 - reported and retried at the next run
            report.errors.append(f"{grant.role.slug}/{username}: {exc}")
            return
        audit.record(
            "drift.restored",
            actor=None,
            target=grant,
            via=Channel.WORKER,
            role=grant.role.slug,
            subject=username,
            data={"reason": "effective grant whose access was missing from the target"},
        )
        report.restored.append(f"{grant.role.slug}/{username}")
