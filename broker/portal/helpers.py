"""Plumbing shared by the portal's views: who is looking, step-up inside a form, errors to forms, pages.

Views stay thin: they read through selectors, change state through services, and use these helpers
to turn the answers into pages.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.http import HttpRequest
from django.utils.translation import gettext as _

from broker.catalog import AUDITORS_GROUP, SECURITY_GROUP
from broker.errors import BrokerError

PAGE_SIZE = 25


@dataclass(frozen=True)
class Viewer:
    """What the signed-in person may see and do in the portal, computed once per request."""

    auditor: bool
    security: bool
    staff: bool

    @property
    def reads_everything(self) -> bool:
        # Auditors read every request, grant and event; administrators too (they revoke any grant).
        return self.auditor or self.staff

    @property
    def reviews_break_glass(self) -> bool:
        # Auditors change nothing, so the post-hoc review is for administrators and security.
        return self.staff or self.security

    @property
    def sees_review(self) -> bool:
        return self.reads_everything or self.security


def viewer(request: HttpRequest) -> Viewer:
    cached = getattr(request, "_portal_viewer", None)
    if cached is not None:
        return cached
    user = request.user
    if not user.is_authenticated or not user.is_active:
        result = Viewer(auditor=False, security=False, staff=False)
    else:
        names = set(user.groups.filter(name__in=(AUDITORS_GROUP, SECURITY_GROUP)).values_list("name", flat=True))
        result = Viewer(auditor=AUDITORS_GROUP in names, security=SECURITY_GROUP in names, staff=user.is_staff)
    request._portal_viewer = result
    return result


class PortalForm(forms.Form):
    """Labels without Django's trailing colon."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


# --- Step-up inside a form ------------------------------------------------------------------------


def code_field(*, required: bool = False) -> forms.CharField:
    return forms.CharField(
        label=_("One-time code"),
        required=required,
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 10}),
        help_text=_("The 6-digit code from your authenticator app, or a backup code."),
        error_messages={"required": _("Enter the 6-digit code from your authenticator app.")},
    )


# --- Errors ---------------------------------------------------------------------------------------

# Field names in the services' errors (shared with the API) and the portal's form fields.
FIELD_ALIASES = {"duration_seconds": "duration", "otp": "code", "expires_in": "expires_in"}


def apply_error(form: forms.Form, exc: BrokerError, *, code_field_name: str = "code") -> None:
    """Put a domain error next to the fields it names, or at the top of the form."""
    placed = False
    for name, problems in exc.fields.items():
        field = FIELD_ALIASES.get(name, name)
        if field in form.fields:
            for problem in problems:
                form.add_error(field, problem)
            placed = True
    mfa_problem = getattr(exc, "code", "") in {"mfa_required", "mfa_invalid", "mfa_not_enrolled", "throttled"}
    if not placed and mfa_problem and code_field_name in form.fields:
        form.add_error(code_field_name, _sentence(exc.detail))
        placed = True
    if not placed:
        form.add_error(None, _sentence(exc.detail))


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return _("Something went wrong.")
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def error_message(request: HttpRequest, exc: BrokerError) -> None:
    messages.error(request, _sentence(exc.detail))


# --- Pages ----------------------------------------------------------------------------------------


def paginate(request: HttpRequest, queryset, per_page: int = PAGE_SIZE, param: str = "page") -> Page:
    """One page of a queryset: a COUNT and a slice, whatever the size of the list."""
    page = Paginator(queryset, per_page).get_page(request.GET.get(param))
    page.param = param
    return page
