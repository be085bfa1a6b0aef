"""Portal form for an approver's decision. The ask form (requests and extensions) is broker/portal/forms.py."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from broker.portal.helpers import PortalForm, code_field


class DecisionForm(PortalForm):
    """Comment and code; the verdict is the button pressed (Approve or Deny), given as ``verdict``."""

    comment = forms.CharField(
        label=gettext_lazy("Comment"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=gettext_lazy("Required to deny; the requester sees it."),
    )

    def __init__(self, *args, needs_code: bool, verdict: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.verdict = verdict
        if needs_code:
            self.fields["code"] = code_field(required=True)

    def clean(self):
        data = super().clean()
        if self.verdict not in ("approve", "deny"):
            raise forms.ValidationError(_("Press Approve or Deny."))
        if self.verdict == "deny" and not (data.get("comment") or "").strip():
            self.add_error("comment", _("Say why you deny; the requester sees it."))
        data["verdict"] = self.verdict
        return data
