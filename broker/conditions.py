"""Conditions on asking for a role and on its activation: one pure function, ``evaluate``.

A role may declare (policy file, ``conditions``) where, when and from what it may be asked for:

- ``networks``: the client address must be in one of these ranges (IPv4 or IPv6 CIDR); the
  address is the one the broker records for the audit trail (``broker.http.client_ip``, which
  follows ``TRUSTED_PROXY_COUNT``);
- ``windows`` in ``time_zone``: the moment must fall in one of these weekly windows, read on the
  wall clock of that zone (so a window follows daylight saving time);
- ``posture``: the device posture signal (a header a trusted proxy or device-trust agent sets,
  ``DEVICE_POSTURE_HEADER``, believed only from ``DEVICE_POSTURE_TRUSTED_PROXIES``) must be one of
  these values;
- ``max_risk``: the person's current risk level (from the risk signals the broker received in the
  last ``RISK_LEVEL_MEMORY``) must be at most this.

``evaluate`` takes the role's conditions and a ``Context`` and returns every refusal with its
reason; an empty list means the conditions hold. It reads nothing and writes nothing: the callers
(the ask path, the activation of a scheduled grant) gather the context and act on the answer. At
activation there is no client (a worker switches the grant on), so only the conditions that do not
depend on the connection are checked there: windows and risk.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils.translation import gettext as _

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Risk levels, lowest first: no recent signal, a ``risk_high`` signal, a signal that the account
# or its credentials are compromised (``credential_compromised``, ``account_disabled``).
RISK_LEVELS = ("low", "high", "critical")
RISK_OF_EVENT = {"risk_high": "high", "credential_compromised": "critical", "account_disabled": "critical"}
KINDS = ("network", "window", "posture", "risk")
# What can be checked when a worker activates a scheduled grant (there is no client then).
AT_ACTIVATION = frozenset({"window", "risk"})

_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class Window:
    """A weekly window: on ``days`` (0 is Monday), from ``start`` until ``end`` on the wall clock.

    ``end`` at or before ``start`` runs past midnight into the next day (22:00-06:00); the days
    are the days the window starts on. ``end`` 24:00 is written as ``None``: until midnight.
    """

    days: frozenset[int]
    start: time
    end: time | None

    def contains(self, local: datetime) -> bool:
        clock, day = local.time().replace(tzinfo=None), local.weekday()
        if self.end is None:
            return day in self.days and clock >= self.start
        if self.start < self.end:
            return day in self.days and self.start <= clock < self.end
        # Past midnight: the evening of a listed day, or the morning after one.
        return (day in self.days and clock >= self.start) or ((day - 1) % 7 in self.days and clock < self.end)

    def __str__(self) -> str:
        days = ", ".join(DAYS[d] for d in sorted(self.days))
        end = "24:00" if self.end is None else self.end.strftime("%H:%M")
        return f"{days} {self.start:%H:%M}-{end}"


@dataclass(frozen=True)
class Conditions:
    networks: tuple[str, ...] = ()
    time_zone: str = "UTC"
    windows: tuple[Window, ...] = ()
    posture: tuple[str, ...] = ()
    max_risk: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.networks or self.windows or self.posture or self.max_risk)


@dataclass(frozen=True)
class Context:
    """What the conditions are checked against. ``client_ip`` and ``posture`` are None when unknown
    (a posture header from an untrusted hop is unknown, not its value)."""

    now: datetime
    client_ip: str | None = None
    posture: str | None = None
    risk: str = "low"
    at_activation: bool = False


@dataclass(frozen=True)
class Refusal:
    condition: str  # one of KINDS: a stable English word for the API and the audit trail
    reason: str  # in words, for people

    def as_dict(self) -> dict[str, str]:
        return {"condition": self.condition, "reason": self.reason}


@dataclass(frozen=True)
class Outcome:
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.refusals

    def __str__(self) -> str:
        return "; ".join(r.reason for r in self.refusals)


# --- Reading the stored form -----------------------------------------------------------------------


def parse_hours(text: str) -> tuple[time, time | None]:
    """``"08:00-18:00"`` as (start, end); end None for 24:00. ValueError with a sentence otherwise."""
    match = _HOURS.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected hours such as '08:00-18:00', got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"{text!r} is not a time of day from 00:00 to 24:00")
    if (h1, m1) == (h2, m2):
        raise ValueError(f"{text!r} is empty: the end must differ from the start")
    return time(h1, m1), None if h2 == 24 else time(h2, m2)


def parse_days(values: Iterable[str]) -> frozenset[int]:
    days = set()
    for value in values:
        if value not in DAYS:
            raise ValueError(f"unknown day {value!r} (expected {', '.join(DAYS)})")
        days.add(DAYS.index(value))
    return frozenset(days)


def time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (expected a name such as Europe/Berlin)") from None


def from_stored(data: Mapping[str, Any] | None) -> Conditions:
    """The conditions as a role stores them (``Role.conditions``, written by the policy loader)."""
    data = data or {}
    windows = []
    for entry in data.get("windows") or ():
        start, end = parse_hours(entry["hours"])
        windows.append(Window(days=parse_days(entry.get("days") or DAYS), start=start, end=end))
    return Conditions(
        networks=tuple(data.get("networks") or ()),
        time_zone=data.get("time_zone") or "UTC",
        windows=tuple(windows),
        posture=tuple(data.get("posture") or ()),
        max_risk=data.get("max_risk") or None,
    )


def risk_of_events(events: Iterable[str]) -> str:
    """The risk level that a set of recent risk signal events amounts to: the highest of them."""
    levels = [RISK_OF_EVENT.get(event, "high") for event in events]
    return max(levels, key=RISK_LEVELS.index, default="low")


# --- The function ----------------------------------------------------------------------------------


def evaluate(conditions: Conditions, context: Context) -> Outcome:
    """Every condition of ``conditions`` that ``context`` fails, with why."""
    refusals: list[Refusal] = []
    kinds = AT_ACTIVATION if context.at_activation else frozenset(KINDS)
    if conditions.networks and "network" in kinds:
        refusals += _network(conditions.networks, context.client_ip)
    if conditions.windows and "window" in kinds:
        refusals += _window(conditions, context.now)
    if conditions.posture and "posture" in kinds:
        refusals += _posture(conditions.posture, context.posture)
    if conditions.max_risk and "risk" in kinds:
        refusals += _risk(conditions.max_risk, context.risk)
    return Outcome(refusals)


def _network(networks: tuple[str, ...], client_ip: str | None) -> list[Refusal]:
    allowed = ", ".join(networks)
    try:
        address = ipaddress.ip_address((client_ip or "").strip())
    except ValueError:
        return [Refusal("network", f"your network address is unknown; this role may be asked for only from {allowed}")]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.1.2.3 is 10.1.2.3
    for network in networks:
        net = ipaddress.ip_network(network, strict=False)
        if address.version == net.version and address in net:
            return []
    return [Refusal("network", f"your address {address} is outside the allowed networks ({allowed})")]


def _window(conditions: Conditions, now: datetime) -> list[Refusal]:
    local = now.astimezone(time_zone(conditions.time_zone))
    if any(window.contains(local) for window in conditions.windows):
        return []
    windows = "; ".join(str(w) for w in conditions.windows)
    return [
        Refusal(
            "window",
            f"it is {local:%a %H:%M} in {conditions.time_zone}, outside the allowed times ({windows})",
        )
    ]


def _posture(accepted: tuple[str, ...], value: str | None) -> list[Refusal]:
    wanted = ", ".join(accepted)
    if not value:
        return [Refusal("posture", f"no trusted device posture signal came with the request (needed: {wanted})")]
    if value.strip().lower() not in {a.lower() for a in accepted}:
        return [Refusal("posture", f"your device posture is {value.strip()[:64]!r}, not one of {wanted}")]
    return []


def _risk(maximum: str, level: str) -> list[Refusal]:
    if RISK_LEVELS.index(level) > RISK_LEVELS.index(maximum):
        return [Refusal("risk", f"your current risk level is {level}, above this role's maximum ({maximum})")]
    return []


def describe(conditions: Conditions) -> list[str]:
    """The conditions in sentences, for the people asking (the portal's request page)."""
    lines = []
    if conditions.networks:
        lines.append(_("Only from the networks %(networks)s.") % {"networks": ", ".join(conditions.networks)})
    if conditions.windows:
        lines.append(
            _("Only at these times (%(zone)s): %(windows)s; checked again when the grant starts.")
            % {"zone": conditions.time_zone, "windows": "; ".join(str(w) for w in conditions.windows)}
        )
    if conditions.posture:
        lines.append(
            _("Only from a device whose posture is one of %(postures)s.") % {"postures": ", ".join(conditions.posture)}
        )
    if conditions.max_risk:
        lines.append(
            _("Only while your risk level is at most %(level)s; checked again when the grant starts.")
            % {"level": conditions.max_risk}
        )
    return lines


def problems_in_stored(data: Any) -> list[str]:
    """What is wrong with conditions in their stored form (a role edited in the admin), in sentences."""
    if not isinstance(data, dict):
        return ["must be a mapping"]
    problems = []
    unknown = set(data) - {"networks", "time_zone", "windows", "posture", "max_risk"}
    if unknown:
        problems.append(f"unknown keys: {', '.join(sorted(unknown))}")
    for network in data.get("networks") or []:
        try:
            ipaddress.ip_network(network, strict=True)
        except (TypeError, ValueError):
            problems.append(f"{network!r} is not a network such as 10.0.0.0/8 or 2001:db8::/32")
    try:
        time_zone(data.get("time_zone") or "UTC")
    except ValueError as exc:
        problems.append(str(exc))
    for window in data.get("windows") or []:
        try:
            parse_hours(window["hours"])
            parse_days(window.get("days") or DAYS)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"window {window!r}: {exc}")
    if not isinstance(data.get("posture") or [], list):
        problems.append("posture must be a list of words")
    if data.get("max_risk") not in (None, "", *RISK_LEVELS[:-1]):
        problems.append(f"max_risk must be one of {', '.join(RISK_LEVELS[:-1])}")
    return problems
