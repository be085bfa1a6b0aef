"""The ask form: one form for requesting a role and for asking more time on a grant.

It checks shape only (a duration among the role's presets or typed, reasons where the role
requires them, a code where a step-up is needed); the service ``approvals.services`` decides what
is allowed. Kept in the portal plumbing because two apps show it: approvals handles the asking,
grants shows the extension form on a grant's page.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from broker.durations import humanize_duration, parse_duration
from broker.models import Role
from broker.portal.helpers import PortalForm, code_field

PRESETS = [timedelta(minutes=m) for m in (5, 15, 30, 60, 120, 240, 480, 720, 1440)]
CUSTOM = "custom"


def duration_choices(role: Role, *, cap: timedelta | None = None) -> list[tuple[str, str]]:
    """Presets within the role's bounds (and the default and the maximum themselves), plus custom."""
    top = min(role.max_duration, cap) if cap else role.max_duration
    low = role.min_duration or timedelta(0)
    values = {p for p in PRESETS if low <= p <= top}
    values.add(top)
    if role.default_duration <= top:
        values.add(role.default_duration)
    choices = [(str(int(v.total_seconds())), humanize_duration(v)) for v in sorted(values)]
    return [*choices, (CUSTOM, _("Other"))]


class AskForm(PortalForm):
    """A new request for ``role``, or (``extension``: the most that is left, ``cap``) more time on a grant."""

    justification = forms.CharField(
        label=gettext_lazy("Justification"), required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3})
    )
    ticket = forms.CharField(label=gettext_lazy("Ticket"), required=False, max_length=200)
    starts_at = forms.DateTimeField(
        label=gettext_lazy("Start later (optional)"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )

    def __init__(self, *args, role: Role, needs_code: bool, cap: timedelta | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.role = role
        extension = cap is not None
        if extension:
            choices = duration_choices(role, cap=cap) if cap > timedelta(0) else [(CUSTOM, _("Other"))]
            initial = choices[min(2, len(choices) - 2)][0] if len(choices) > 1 else CUSTOM
        else:
            choices = duration_choices(role)
            initial = str(int(role.default_duration.total_seconds()))
        self.fields["duration"] = forms.ChoiceField(
            label=_("Extend by") if extension else _("For how long"),
            choices=choices,
            initial=initial,
            widget=forms.RadioSelect,
        )
        self.fields["custom_duration"] = forms.CharField(
            label=_("Other duration"),
            required=False,
            max_length=20,
            help_text=_("For example 45m, 2h or 1h30m."),
            widget=forms.TextInput(attrs={"size": 10, "data-custom-duration": ""}),
        )
        self.order_fields(["duration", "custom_duration", "justification", "ticket", "starts_at"])
        self.fields["justification"].required = role.requires_reason
        self.fields["ticket"].required = role.requires_ticket
        if extension:
            self.fields["justification"].widget.attrs["rows"] = 2
            del self.fields["starts_at"]
        else:
            self.fields["justification"].help_text = (
                _("Why you need it now: incident, change or task. Approvers and auditors read this.")
                if role.requires_reason
                else _("Optional.")
            )
            self.fields["ticket"].help_text = _("Required for this role.") if role.requires_ticket else _("Optional.")
            self.fields["starts_at"].help_text = _("In your time zone, %(zone)s. Empty: as soon as it is approved.") % {
                "zone": timezone.get_current_timezone_name()
            }
            if role.break_glass:
                del self.fields["starts_at"]
                self.fields["confirm"] = forms.BooleanField(
                    label=_(
                        "I am activating emergency access. I understand that security is notified now "
                        "and that this activation will be reviewed."
                    ),
                    required=True,
                    error_messages={"required": _("Tick the box to confirm that this is an emergency.")},
                )
        if needs_code:
            self.fields["code"] = code_field(required=True)

    def clean(self):
        data = super().clean()
        data["duration_value"] = self._clean_duration()
        return data

    def _clean_duration(self) -> timedelta | None:
        choice = self.cleaned_data.get("duration")
        if choice != CUSTOM:
            return timedelta(seconds=int(choice)) if choice else None
        text = (self.cleaned_data.get("custom_duration") or "").strip()
        if not text:
            self.add_error("custom_duration", _("Enter a duration such as 45m or 1h30m."))
            return None
        try:
            return parse_duration(text)
        except ValueError:
            self.add_error("custom_duration", _("Enter a duration such as 45m, 2h or 1h30m (units s, m, h, d)."))
            return None
