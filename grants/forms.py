"""Portal forms for grants: an administrator's revoke, the post-hoc review of break-glass, the review period."""

from django import forms

from broker.portal.helpers import PortalForm


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


MAX_REVIEW_DAYS = 92


class PeriodForm(PortalForm):
    since = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until:
            if until < since:
                self.add_error("until", "The end comes before the start.")
            elif (until - since).days + 1 > MAX_REVIEW_DAYS:
                self.add_error("until", f"Choose at most {MAX_REVIEW_DAYS} days.")
        return data
