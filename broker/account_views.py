"""Account pages: login, logout and the step-up verification page."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from broker.errors import BrokerError
from broker.stepup import verify_and_mark


class CodeForm(forms.Form):
    code = forms.CharField(
        label="One-time code",
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
        help_text="The 6-digit code from your authenticator app, or one of your backup codes.",
    )


def safe_next(request, default: str = "/") -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def mfa_verify(request):
    """Ask for a one-time code; on success the session counts as freshly verified."""
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            verify_and_mark(request, form.cleaned_data["code"])
        except BrokerError as exc:
            form.add_error("code", exc.detail)
        else:
            return redirect(safe_next(request))
    return render(request, "account/mfa_verify.html", {"form": form, "next": safe_next(request, "")})
