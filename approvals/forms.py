"""Portal forms for requests and decisions. They check shape only; the services decide what is allowed."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

from broker.durations import humanize_duration, parse_duration
from broker.models import Role
from broker.portal import PortalForm, code_field

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
    return [*choices, (CUSTOM, "Other")]


class DurationMixin:
    """A radio list of presets and a free "Other" duration (``45m``, ``1h30m``)."""

    def _clean_duration(self) -> timedelta | None:
        choice = self.cleaned_data.get("duration")
        if choice != CUSTOM:
            return timedelta(seconds=int(choice)) if choice else None
        text = (self.cleaned_data.get("custom_duration") or "").strip()
        if not text:
            self.add_error("custom_duration", "Enter a duration such as 45m or 1h30m.")
            return None
        try:
            return parse_duration(text)
        except ValueError:
            self.add_error("custom_duration", "Enter a duration such as 45m, 2h or 1h30m (units s, m, h, d).")
            return None


def _duration_fields(form: forms.Form, choices: list[tuple[str, str]], initial: str) -> None:
    form.fields["duration"] = forms.ChoiceField(
        label="For how long", choices=choices, initial=initial, widget=forms.RadioSelect
    )
    form.fields["custom_duration"] = forms.CharField(
        label="Other duration",
        required=False,
        max_length=20,
        help_text="For example 45m, 2h or 1h30m.",
        widget=forms.TextInput(attrs={"size": 10, "data-custom-duration": ""}),
    )


class RequestForm(DurationMixin, PortalForm):
    justification = forms.CharField(
        label="Justification", required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3})
    )
    ticket = forms.CharField(label="Ticket", required=False, max_length=200)
    starts_at = forms.DateTimeField(
        label="Start later (optional)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )

    def __init__(self, *args, role: Role, needs_code: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.role = role
        choices = duration_choices(role)
        _duration_fields(self, choices, str(int(role.default_duration.total_seconds())))
        # Order: duration first, then the reasons.
        self.order_fields(["duration", "custom_duration", "justification", "ticket", "starts_at"])
        required_reason = role.requires_justification or role.break_glass
        self.fields["justification"].required = required_reason
        self.fields["justification"].help_text = (
            "Why you need it now: incident, change or task. Approvers and auditors read this."
            if required_reason
            else "Optional."
        )
        self.fields["ticket"].required = role.requires_ticket
        self.fields["ticket"].help_text = "Required for this role." if role.requires_ticket else "Optional."
        self.fields[
            "starts_at"
        ].help_text = f"In your time zone, {timezone.get_current_timezone_name()}. Empty: as soon as it is approved."
        if role.break_glass:
            del self.fields["starts_at"]
            self.fields["confirm"] = forms.BooleanField(
                label="I am activating emergency access. I understand that security is notified now "
                "and that this activation will be reviewed.",
                required=True,
            )
        if needs_code:
            self.fields["code"] = code_field(required=True)

    def clean(self):
        data = super().clean()
        data["duration_value"] = self._clean_duration()
        return data


class ExtensionForm(DurationMixin, PortalForm):
    justification = forms.CharField(
        label="Justification", required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )
    ticket = forms.CharField(label="Ticket", required=False, max_length=200)

    def __init__(self, *args, role: Role, room: timedelta, needs_code: bool, **kwargs):
        super().__init__(*args, **kwargs)
        choices = duration_choices(role, cap=room) if room > timedelta(0) else [(CUSTOM, "Other")]
        initial = choices[min(2, len(choices) - 2)][0] if len(choices) > 1 else CUSTOM
        _duration_fields(self, choices, initial)
        self.fields["duration"].label = "Extend by"
        self.order_fields(["duration", "custom_duration", "justification", "ticket"])
        self.fields["justification"].required = role.requires_justification or role.break_glass
        self.fields["ticket"].required = role.requires_ticket
        if needs_code:
            self.fields["code"] = code_field(required=True)

    def clean(self):
        data = super().clean()
        data["duration_value"] = self._clean_duration()
        return data


class DecisionForm(PortalForm):
    """Comment and code; the verdict is the button pressed (Approve or Deny), given as ``verdict``."""

    comment = forms.CharField(
        label="Comment",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required to deny; the requester sees it.",
    )

    def __init__(self, *args, needs_code: bool, verdict: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.verdict = verdict
        if needs_code:
            self.fields["code"] = code_field(required=True)

    def clean(self):
        data = super().clean()
        if self.verdict not in ("approve", "deny"):
            raise forms.ValidationError("Press Approve or Deny.")
        if self.verdict == "deny" and not (data.get("comment") or "").strip():
            self.add_error("comment", "Say why you deny; the requester sees it.")
        data["verdict"] = self.verdict
        return data
