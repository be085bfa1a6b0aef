"""`apply_policy --suggest`: the policy file without the eligibilities the broker found unused or removed.

The roles part of the file is printed as written, comments included; the top-level ``eligibility:``
block is written anew (its comments are not kept), without the unused eligibilities
(approvals.rightsizing) and those the broker removed and keeps out (EligibilityExclusion).
"""

from __future__ import annotations

import re
from datetime import datetime

from approvals.rightsizing import unused_eligibilities
from broker.durations import format_duration
from broker.models import EligibilityExclusion
from broker.policy.schema import Policy

_TOP_KEY = re.compile(r"^[A-Za-z_\"']")
_ELIGIBILITY = re.compile(r"^eligibility\s*:")


def dropped(policy: Policy, *, now: datetime | None = None) -> dict[tuple[str, str], str]:
    """(role slug, who) → why, for every eligibility of the file that the suggestion leaves out;
    ``who`` is a username or group:NAME."""
    slugs = {spec.slug for spec in policy.roles}
    out = {}
    for unused in unused_eligibilities(now=now):
        if unused.role.slug in slugs:
            last = f"last asked {unused.last_asked:%Y-%m-%d}" if unused.last_asked else "never asked"
            out[(unused.role.slug, unused.who)] = f"unused for {unused.since.days} days ({last})"
    for exclusion in EligibilityExclusion.objects.select_related("role", "user", "group"):
        out[(exclusion.role.slug, exclusion.who)] = f"removed by the broker ({exclusion.reason}: {exclusion.detail})"
    return out


def _names(values: list[str]) -> str:
    return "[" + ", ".join(values) + "]"


def eligibility_block(policy: Policy, drop: dict[tuple[str, str], str]) -> list[str]:
    lines = ["eligibility:"]
    for entry in policy.eligibility:
        users = [u for u in entry.users if (entry.role, u) not in drop]
        groups = [g for g in entry.groups if (entry.role, f"group:{g}") not in drop]
        if not users and not groups:
            continue
        lines.append(f"  - role: {entry.role}")
        if groups:
            lines.append(f"    groups: {_names(groups)}")
        if users:
            lines.append(f"    users: {_names(users)}")
        if entry.recertify is not None:
            r = entry.recertify
            every, grace = format_duration(r.every), format_duration(r.grace)
            lines.append(
                f"    recertify: {{every: {every}, grace: {grace}, expire: {'true' if r.expire else 'false'}}}"
            )
    if len(lines) == 1:
        lines[0] = "eligibility: []"
    return lines


def suggest(text: str, policy: Policy, *, now: datetime | None = None) -> tuple[str, dict[tuple[str, str], str]]:
    """The file's text with the eligibility block rewritten, and what was left out (and why)."""
    drop = {key: why for key, why in dropped(policy, now=now).items() if _in_file(policy, key)}
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _ELIGIBILITY.match(line)), None)
    block = eligibility_block(policy, drop)
    if start is None:
        return "\n".join([*lines, *block]) + "\n", drop
    end = next((j for j in range(start + 1, len(lines)) if _TOP_KEY.match(lines[j])), len(lines))
    return "\n".join([*lines[:start], *block, *lines[end:]]) + "\n", drop


def _in_file(policy: Policy, key: tuple[str, str]) -> bool:
    slug, who = key
    users, groups = policy.eligible(slug)
    return who.removeprefix("group:") in groups if who.startswith("group:") else who in users
