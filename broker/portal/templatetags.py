"""Template helpers for the portal: times in the viewer's zone (named), durations, countdowns, pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django import template
from django.forms import BaseForm
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.translation import gettext as _

from broker import text, wording
from broker.durations import day_unit, humanize_duration

register = template.Library()

FORMATS = {
    "long": "j M Y, H:i T",
    "seconds": "j M Y, H:i:s T",
    "short": "j M, H:i T",
}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@register.filter
def when(value, style: str = "long"):
    """A <time> element in the viewer's time zone, with the zone's abbreviation."""
    if not isinstance(value, datetime):
        return "—"
    local = timezone.localtime(value)
    return format_html('<time datetime="{}">{}</time>', _iso(value), date_format(local, FORMATS.get(style, style)))


@register.filter
def visible(value):
    """People's free text without control and invisible format characters (bidi overrides, zero-width)."""
    return text.visible(value)


@register.filter
def indented(value):
    """For plain-text email: visible text, every line after the first indented from the margin."""
    return text.indented(value)


@register.filter
def duration(value):
    if isinstance(value, int | float):
        value = timedelta(seconds=value)
    return humanize_duration(value) if isinstance(value, timedelta) else ""


@register.filter
def hours(value):
    """A number of hours for people: ``2 h 15 min``, ``40 s``."""
    try:
        return humanize_duration(timedelta(hours=float(value)))
    except (TypeError, ValueError, OverflowError):
        return ""


@register.simple_tag
def countdown(until, label: str | None = None):
    """Time left until ``until``, counted down each second by portal.js; plain text without JS.

    The words portal.js writes (the label, "time is up", the day unit) come in data attributes, in
    the page's language."""
    if not isinstance(until, datetime):
        return ""
    label = _("left") if label is None else str(label)
    left = until - timezone.now()
    text = f"{humanize_duration(left)} {label}".strip() if left.total_seconds() > 0 else _("time is up")
    return format_html(
        '<time class="countdown" datetime="{}" data-countdown data-label="{}" data-up="{}" data-day="{}">{}</time>',
        _iso(until),
        label,
        _("time is up — refresh"),
        day_unit(),
        text,
    )


@register.simple_tag(takes_context=True)
def page_url(context, number, param="page"):
    """The current URL with another page number, keeping the filters."""
    request = context["request"]
    params = request.GET.copy()
    params[param] = number
    return "?" + params.urlencode()


@register.filter
def grant_state(grant) -> str:
    """A grant's badge text: its state, and once it ended, why ("relinquished", not "revoked")."""
    return wording.grant_state(getattr(grant, "status", ""), getattr(grant, "end_reason", None))


@register.filter
def grant_status(status: str) -> str:
    """A grant status code in words, whatever the end reason ("revoke_failed": "removal failing")."""
    return wording.grant_state(status or "")


@register.filter
def request_state(status: str) -> str:
    return wording.request_state(status or "")


@register.filter
def ended_because(code: str | None) -> str:
    """Why a grant ended, in words: "the holder gave it back early"."""
    return wording.ended_because(code)


@register.filter
def channel(code: str) -> str:
    """How an event came in, in words: "in the portal", "by email link"."""
    return wording.channel(code or "")


@register.filter
def status_class(status: str) -> str:
    return {
        "pending": "badge-wait",
        "scheduled": "badge-wait",
        "approved": "badge-ok",
        "active": "badge-ok",
        "denied": "badge-bad",
        "failed": "badge-bad",
        "revoke_failed": "badge-bad",
        "revoking": "badge-warn",
        "expired": "badge-muted",
        "cancelled": "badge-muted",
        "revoked": "badge-muted",
    }.get(status, "badge-muted")


# --- Errors after a refused submit ----------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    text: str
    href: str = ""  # "#<id of the field>", or "" for what belongs to no one field


def _form_problems(form: BaseForm) -> list[Problem]:
    problems = [Problem(str(e)) for e in form.non_field_errors()]
    for field in form:
        if not field.errors:
            continue
        # Radio buttons and checkbox lists have no single label target: their first choice is.
        target = field.id_for_label or (f"{field.auto_id}_0" if field.auto_id else "")
        href = f"#{target}" if target and not field.is_hidden else ""
        problems += [Problem(f"{field.label}: {e}" if field.label else str(e), href) for e in field.errors]
    return problems


@register.simple_tag(takes_context=True)
def page_problems(context) -> list[Problem]:
    """Every problem of the forms on this page that were sent and refused (base.html shows the
    summary and prefixes the title with "Error:"). Forms are found in the context by type, so
    that every view's forms count, whatever their names."""
    problems: list[Problem] = []
    seen: set[int] = set()
    for value in context.flatten().values():
        if isinstance(value, BaseForm) and value.is_bound and id(value) not in seen:
            seen.add(id(value))
            if value.errors:
                problems += _form_problems(value)
    return problems
