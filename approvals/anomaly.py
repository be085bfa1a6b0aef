"""Anomaly flags: is a new request unusual for this person, against their own history and their peers'?

Two halves:

- ``history`` reads a small ``History`` summary with a handful of bounded, indexed queries
  (AccessRequest's ``request_requester_created``, ``request_requester_role_made`` and
  ``request_role_created`` indexes; each read is a range of at most ANOMALY_HISTORY_LIMIT rows
  within ANOMALY_LOOKBACK, never a scan of the table).
- ``score`` is a pure function of that summary and the new request's facts: it returns the
  reasons, each a stable ``code`` and a ``sentence`` that approvers and auditors read. A request
  with at least one reason (not listed in ANOMALY_IGNORE) is flagged: asking for it needs a fresh
  second factor, even for roles without MFA, and the reasons are stored on the request and carried
  in its ``request.created`` audit event.
"""

from __future__ import annotations

import ipaddress
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import translation

from approvals.models import AccessRequest
from broker.durations import humanize_duration

FIRST_FOR_ROLE = "first_for_role"
UNUSUAL_HOUR = "unusual_hour"
BURST = "burst"
LONG_DURATION = "long_duration"
NEW_NETWORK = "new_network"
CODES = (FIRST_FOR_ROLE, UNUSUAL_HOUR, BURST, LONG_DURATION, NEW_NETWORK)


@dataclass(frozen=True)
class Config:
    lookback: timedelta
    min_history: int
    burst_count: int
    burst_window: timedelta
    duration_factor: int
    ignore: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls) -> Config:
        return cls(
            lookback=settings.ANOMALY_LOOKBACK,
            min_history=settings.ANOMALY_MIN_HISTORY,
            burst_count=settings.ANOMALY_BURST_COUNT,
            burst_window=settings.ANOMALY_BURST_WINDOW,
            duration_factor=settings.ANOMALY_DURATION_FACTOR,
            ignore=frozenset(settings.ANOMALY_IGNORE),
        )


@dataclass(frozen=True)
class Ask:
    """The facts of the new request that are scored."""

    username: str
    role: str
    at: datetime
    duration: timedelta
    network: str = ""


@dataclass
class History:
    """What the scoring knows of the past, within the lookback: small and already aggregated."""

    # Hours of day (UTC) of the person's recent requests, any role.
    hours: list[int] = field(default_factory=list)
    # Networks the person asked from recently.
    networks: set[str] = field(default_factory=set)
    # Has the person asked for this role before (within the lookback)?
    asked_role_before: bool = False
    # Durations the person asked for this role, and the ones their peers asked for it.
    own_durations: list[timedelta] = field(default_factory=list)
    peer_durations: list[timedelta] = field(default_factory=list)
    # Other people who asked for this role recently.
    peers: int = 0
    # The person's requests within the burst window before now.
    recent: int = 0


@dataclass(frozen=True)
class Reason:
    code: str
    sentence: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "sentence": self.sentence}


def network_of(ip: str | None) -> str:
    """The network an address belongs to for comparison: IPv4 /24, IPv6 /48; empty when unknown."""
    if not ip:
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def history(*, requester_id: int, role_id: int, now: datetime, config: Config, limit: int | None = None) -> History:
    """The summary ``score`` needs, from four bounded reads on indexed columns."""
    limit = limit or settings.ANOMALY_HISTORY_LIMIT
    since = now - config.lookback
    past = AccessRequest.objects.filter(created_at__gte=since, created_at__lt=now).order_by("-created_at")
    own = list(past.filter(requester_id=requester_id).values_list("created_at", "network")[:limit])
    own_role = list(past.filter(requester_id=requester_id, role_id=role_id).values_list("duration", flat=True)[:limit])
    peers = list(
        past.filter(role_id=role_id).exclude(requester_id=requester_id).values_list("requester_id", "duration")[:limit]
    )
    recent = past.filter(requester_id=requester_id, created_at__gte=now - config.burst_window).count()
    return History(
        hours=[at.hour for at, _ in own],
        networks={net for _, net in own if net},
        asked_role_before=bool(own_role),
        own_durations=own_role,
        peer_durations=[d for _, d in peers],
        peers=len({who for who, _ in peers}),
        recent=recent,
    )


def _near(hour: int, other: int) -> bool:
    """Within one hour either way, around midnight too."""
    gap = abs(hour - other) % 24
    return min(gap, 24 - gap) <= 1


def score(ask: Ask, past: History, config: Config) -> list[Reason]:
    """Why ``ask`` is unusual for this person, as reasons (empty: nothing unusual). Pure.

    The sentences are stored on the request and in its audit event, so they are English (like every
    stored text, docs/translations.md); the codes let a client word them its own way."""
    reasons: list[Reason] = []
    days = config.lookback.days or 1
    # Someone with no requests at all in the lookback has no habits to compare with: their first
    # request is not flagged for being a first.
    if past.hours and not past.asked_role_before:
        reasons.append(
            Reason(
                FIRST_FOR_ROLE,
                f"{ask.username} has not asked for {ask.role} in the last {days} days; "
                + (
                    "nobody else has either."
                    if past.peers == 0
                    else f"{past.peers} other person has."
                    if past.peers == 1
                    else f"{past.peers} other people have."
                ),
            )
        )
    if len(past.hours) >= config.min_history and not any(_near(ask.at.hour, h) for h in past.hours):
        reasons.append(
            Reason(
                UNUSUAL_HOUR,
                f"Asked at {ask.at:%H:%M} UTC; none of {ask.username}'s {len(past.hours)} requests in the last "
                f"{days} days was made within an hour of that time of day.",
            )
        )
    made = past.recent + 1
    if made >= config.burst_count:
        reasons.append(
            Reason(
                BURST,
                f"{ask.username} made {made} requests within {humanize_duration(config.burst_window)} "
                "(this one included).",
            )
        )
    norm, whose = None, ""
    if len(past.own_durations) >= config.min_history:
        norm, whose = statistics.median_low(past.own_durations), "their usual"
    elif len(past.peer_durations) >= config.min_history:
        norm, whose = statistics.median_low(past.peer_durations), "their peers' usual"
    if norm is not None and ask.duration > norm * config.duration_factor:
        reasons.append(
            Reason(
                LONG_DURATION,
                f"Asked for {humanize_duration(ask.duration)} of {ask.role}, more than {config.duration_factor} "
                f"times {whose} {humanize_duration(norm)}.",
            )
        )
    if ask.network and past.networks and ask.network not in past.networks:
        reasons.append(
            Reason(
                NEW_NETWORK,
                f"Asked from {ask.network}, a network {ask.username} has not used in the last {days} days.",
            )
        )
    return [r for r in reasons if r.code not in config.ignore]


def assess(*, requester, role, duration: timedelta, network: str, now: datetime) -> list[Reason]:
    """Score a new request of ``requester`` for ``role`` (nothing when ANOMALY_SCORING is off)."""
    if not settings.ANOMALY_SCORING:
        return []
    config = Config.from_settings()
    past = history(requester_id=requester.pk, role_id=role.pk, now=now, config=config)
    ask = Ask(username=requester.get_username(), role=role.slug, at=now, duration=duration, network=network)
    with translation.override(None):  # stored text stays English (humanize_duration is translated)
        return score(ask, past, config)
