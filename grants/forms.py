"""Portal forms for grants: an administrator's revoke, the post-hoc review of break-glass, the review period."""

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from broker.portal.helpers import PortalForm


class RevokeForm(PortalForm):
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=gettext_lazy("Recorded in the audit trail and shown to the holder."),
    )


class ReviewForm(PortalForm):
    note = forms.CharField(
        label=gettext_lazy("Review note"),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=gettext_lazy("What you checked: the incident, what was done with the access."),
    )


MAX_REVIEW_DAYS = 92


class PeriodForm(PortalForm):
    since = forms.DateField(label=pgettext_lazy("since", "From"), widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label=gettext_lazy("To (inclusive)"), widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until:
            if until < since:
                self.add_error("until", _("The end comes before the start."))
            elif (until - since).days + 1 > MAX_REVIEW_DAYS:
                self.add_error("until", _("Choose at most %(days)s days.") % {"days": MAX_REVIEW_DAYS})
        return data
