"""Portal forms for grants: an administrator's revoke and the post-hoc review of break-glass."""

from django import forms

from broker.portal import PortalForm


class RevokeForm(PortalForm):
    reason = forms.CharField(
        label="Reason",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded in the audit trail and shown to the holder.",
    )


class ReviewForm(PortalForm):
    note = forms.CharField(
        label="Review note",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What you checked: the incident, what was done with the access.",
    )
