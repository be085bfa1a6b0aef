"""Portal pages that belong to no single app: home, my account (time zone), personal API tokens."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from approvals import selectors as request_selectors
from broker import stepup
from broker.catalog import eligible_roles
from broker.errors import BrokerError
from broker.http import client_ip
from broker.middleware import TZ_SESSION_KEY, known_zones, valid_zone
from broker.models import ApiToken, Channel
from broker.portal import (
    PortalForm,
    apply_error,
    code_field,
    drop_code_if_fresh,
    error_message,
    fresh_mfa,
    paginate,
    viewer,
)
from broker.tokens import ALL_SCOPES, DEFAULT_SCOPES, token_create, token_revoke
from grants import selectors as grant_selectors


@login_required
@require_GET
def home(request):
    """My grants with the time left, my pending requests, and the roles I may request."""
    user = request.user
    grants = list(grant_selectors.grants_live_for(user).select_related("role")[:50])
    pending = list(
        request_selectors.requests_of(user).filter(status="pending").select_related("role").order_by("created_at")[:50]
    )
    held = {g.role_id for g in grants}
    asked = {r.role_id for r in pending}
    roles = list(eligible_roles(user).order_by("break_glass", "name"))
    for role in roles:
        role.held = role.pk in held
        role.asked = role.pk in asked
    return render(request, "portal/home.html", {"grants": grants, "pending": pending, "roles": roles})


# --- Account: time zone ---------------------------------------------------------------------------


class TimeZoneForm(PortalForm):
    tz = forms.ChoiceField(label="Time zone", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tz"].choices = [("", "Use my browser's time zone")] + [(z, z) for z in sorted(known_zones())]


@login_required
@require_http_methods(["GET", "POST"])
def account(request):
    """My account: time zone, and the ways to my MFA devices and API tokens."""
    form = TimeZoneForm(request.POST or None, initial={"tz": request.session.get(TZ_SESSION_KEY, "")})
    if request.method == "POST" and form.is_valid():
        chosen = valid_zone(form.cleaned_data["tz"])
        if chosen:
            request.session[TZ_SESSION_KEY] = chosen
            messages.success(request, f"Times are now shown in {chosen}.")
        else:
            request.session.pop(TZ_SESSION_KEY, None)
            messages.success(request, "Times now follow your browser's time zone.")
        return redirect("portal-account")
    return render(request, "portal/account.html", {"form": form})


# --- Personal API tokens --------------------------------------------------------------------------

LIFETIMES = [("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("366", "1 year")]


class TokenForm(PortalForm):
    name = forms.CharField(label="Name", max_length=100, help_text="What it is for, e.g. “laptop CLI”.")
    scopes = forms.MultipleChoiceField(
        label="Scopes", widget=forms.CheckboxSelectMultiple, initial=list(DEFAULT_SCOPES)
    )
    expires_in = forms.ChoiceField(label="Expires after", choices=LIFETIMES, initial="30")

    def __init__(self, *args, staff: bool, needs_code: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["scopes"].choices = [(s, s) for s in ALL_SCOPES if s != "admin" or staff]
        if needs_code:
            self.fields["code"] = code_field(required=True)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    """List my tokens; create one (after a step-up) and show it once."""
    needs_code = not stepup.is_recent(request)
    form = TokenForm(request.POST or None, staff=viewer(request).staff, needs_code=needs_code)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            fresh_mfa(request, form.cleaned_data.get("code"))
            token, text = token_create(
                user=request.user,
                scopes=form.cleaned_data["scopes"],
                expires_in=timedelta(days=int(form.cleaned_data["expires_in"])),
                name=form.cleaned_data["name"],
                via=Channel.PORTAL,
                ip=client_ip(request),
            )
        except BrokerError as exc:
            apply_error(form, exc)
            drop_code_if_fresh(request, form)
        else:
            created = (token, text)
            form = TokenForm(staff=viewer(request).staff, needs_code=False)
    page = paginate(request, ApiToken.objects.filter(user=request.user).order_by("-created_at", "-pk"))
    return render(
        request,
        "portal/tokens.html",
        {"page": page, "form": form, "created": created},
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def token_revoke_view(request, pk: int):
    try:
        token = token_revoke(token_id=pk, owner=request.user, via=Channel.PORTAL, ip=client_ip(request))
    except BrokerError as exc:
        error_message(request, exc)
    else:
        messages.success(request, f"Token {token.prefix}… revoked; it stops working at once.")
    return redirect("portal-tokens")
