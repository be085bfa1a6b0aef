"""Account pages: the step-up page, second-factor devices, the time zone and personal API tokens.

Sign-in is accounts/login.py.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import user_has_device

from accounts import enrolment, preferences, stepup
from accounts.models import ApiToken
from accounts.stepup import step_up_required, verify_and_mark
from accounts.tokens import ALL_SCOPES, DEFAULT_SCOPES, token_create_for_self, token_revoke
from broker.errors import BrokerError
from broker.http import client_ip
from broker.models import Channel
from broker.portal.helpers import PortalForm, apply_error, code_field, error_message, paginate, viewer
from broker.portal.middleware import known_zones

ENROL_SESSION_KEY = "broker_enrol_device"


class CodeForm(PortalForm):
    code = forms.CharField(
        label=gettext_lazy("One-time code"),
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
        help_text=gettext_lazy("The 6-digit code from your authenticator app, or one of your backup codes."),
    )


class ConfirmForm(PortalForm):
    code = forms.CharField(
        label=gettext_lazy("Code shown by the app"),
        max_length=10,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


def safe_next(request, default: str = "/") -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def _no_store(response):
    response["Cache-Control"] = "no-store"
    return response


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def mfa_verify(request):
    """Ask for a one-time code (or a passkey); on success the session counts as freshly verified."""
    if not user_has_device(request.user):
        return redirect(stepup.step_up_url(request, safe_next(request)))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            verify_and_mark(request, form.cleaned_data["code"])
        except BrokerError as exc:
            form.add_error("code", exc.detail)
        else:
            return redirect(safe_next(request))
    return render(
        request,
        "account/mfa_verify.html",
        {"form": form, "next": safe_next(request, ""), "has_passkey": enrolment.has_passkey(request.user)},
    )


class EnrolAuthoriseForm(PortalForm):
    password = forms.CharField(
        label=gettext_lazy("Your password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )

    def __init__(self, *args, needs_code: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if needs_code:
            self.fields["enrolment_code"] = forms.CharField(
                label=gettext_lazy("Enrolment code"),
                max_length=40,
                widget=forms.TextInput(attrs={"autocomplete": "off"}),
                help_text=gettext_lazy(
                    "The code an administrator gave you for setting up your first second factor. "
                    "No code? Ask an administrator."
                ),
            )


def _enrol_authorise(request):
    """Before a first device: re-enter the password (and the enrolment code where required)."""
    needs_code = enrolment.enrolment_code_required(request.user)
    form = EnrolAuthoriseForm(request.POST or None, needs_code=needs_code)
    if request.method == "POST" and form.is_valid():
        try:
            enrolment.first_enrolment_authorise(
                user=request.user,
                password=form.cleaned_data["password"],
                code=form.cleaned_data.get("enrolment_code", ""),
                ip=client_ip(request),
            )
        except BrokerError as exc:
            form.add_error("enrolment_code" if exc.code == "enrolment_code_invalid" else "password", exc.detail)
        else:
            enrolment.mark_enrolment_authorised(request)
            return redirect(request.get_full_path())
    context = {"form": form, "needs_code": needs_code, "next": safe_next(request, "")}
    status = 400 if form.errors else 200
    return _no_store(render(request, "account/mfa_enrol_authorise.html", context, status=status))


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def mfa_enrol(request):
    """Add an authenticator app: scan the QR code, confirm one code; the first time, get backup codes.

    A user who already has a device must step up first, or a stolen session could add its own. The
    first device needs the password again (and an enrolment code where the operator requires one),
    and confirming it is not a verification: the next sensitive step asks for a code as usual.
    """
    first = not user_has_device(request.user)
    if not first and not stepup.is_recent(request):
        return redirect(stepup.step_up_url(request))
    if first and not enrolment.enrolment_authorised(request):
        return _enrol_authorise(request)
    device = enrolment.totp_start(user=request.user, device_id=request.session.get(ENROL_SESSION_KEY))
    request.session[ENROL_SESSION_KEY] = device.pk
    form = ConfirmForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        ip = client_ip(request)
        try:
            device = enrolment.totp_confirm(
                user=request.user, device_id=device.pk, code=form.cleaned_data["code"], ip=ip
            )
        except BrokerError as exc:
            form.add_error("code", exc.detail)
        else:
            del request.session[ENROL_SESSION_KEY]
            enrolment.clear_enrolment_authorised(request)
            # Setting a device up proves nothing about who holds the session: no step-up here.
            codes = (
                None
                if enrolment.has_backup_codes(request.user)
                else enrolment.backup_codes_generate(user=request.user, ip=ip)
            )
            messages.success(request, _("Your authenticator app is set up."))
            if codes:
                return _no_store(
                    render(request, "account/backup_codes.html", {"codes": codes, "next": safe_next(request)})
                )
            return redirect(safe_next(request, reverse("mfa-devices")))
    return _no_store(
        render(
            request,
            "account/mfa_enrol.html",
            {
                "form": form,
                "first": first,
                "qr": enrolment.totp_qr_data_uri(device),
                "secret": enrolment.totp_secret(device),
                "next": safe_next(request, ""),
            },
        )
    )


@never_cache
@step_up_required
@require_http_methods(["GET"])
def mfa_devices(request):
    """The user's devices, after a fresh verification."""
    return render(
        request,
        "account/mfa_devices.html",
        {
            "devices": enrolment.device_rows(request.user),
            "backup_codes_left": enrolment.backup_codes_left(request.user),
        },
    )


@never_cache
@step_up_required
@require_POST
def mfa_backup_codes(request):
    """New backup codes (the old ones stop working); shown once, on this response only."""
    codes = enrolment.backup_codes_generate(user=request.user, ip=client_ip(request))
    return _no_store(render(request, "account/backup_codes.html", {"codes": codes, "next": reverse("mfa-devices")}))


@never_cache
@step_up_required
@require_POST
def mfa_device_remove(request):
    try:
        enrolment.device_remove(user=request.user, persistent_id=request.POST.get("device", ""), ip=client_ip(request))
    except BrokerError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, _("The device was removed."))
    if not user_has_device(request.user):
        messages.warning(request, _("You have no second factor left; sensitive steps will ask you to add one."))
    return redirect("mfa-devices")


# --- Account: time zone and language ---------------------------------------------------------------------------


class TimeZoneForm(PortalForm):
    tz = forms.ChoiceField(
        label=gettext_lazy("Time zone"),
        required=False,
        help_text=gettext_lazy(
            "Used on every page of the portal, on any browser, and in the emails the broker sends you."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tz"].choices = [("", _("Follow my browser (emails in UTC)"))] + [
            (z, z) for z in sorted(known_zones())
        ]


class LanguageForm(PortalForm):
    language = forms.ChoiceField(
        label=gettext_lazy("Language"),
        required=False,
        help_text=gettext_lazy("Used on every page of the portal and in the emails the broker sends you."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Each language named in itself, so that someone who cannot read the page still finds theirs.
        self.fields["language"].choices = [("", _("Follow my browser (emails in English)"))] + [
            (code, name) for code, name in settings.LANGUAGES
        ]


def _account_page(request, *, tz_form=None, language_form=None):
    saved, language = preferences.time_zone_of(request.user), preferences.language_of(request.user)
    tz_form = tz_form or TimeZoneForm(initial={"tz": saved})
    language_form = language_form or LanguageForm(initial={"language": language}, prefix="lang")
    context = {
        "form": tz_form,
        "language_form": language_form,
        "saved_zone": saved,
        "email_zone": saved or settings.TIME_ZONE,
        "saved_language": language,
    }
    failed = tz_form.errors or language_form.errors
    return render(request, "portal/account.html", context, status=400 if failed else 200)


@login_required
@require_http_methods(["GET", "POST"])
def account(request):
    """My account: the time zone and language saved on it, and the ways to my MFA devices and API tokens."""
    if request.method == "POST" and "lang-language" in request.POST:
        return _account_language(request)
    saved = preferences.time_zone_of(request.user)
    form = TimeZoneForm(request.POST or None, initial={"tz": saved})
    if request.method == "POST" and form.is_valid():
        try:
            chosen = preferences.time_zone_set(user=request.user, zone=form.cleaned_data["tz"])
        except BrokerError as exc:
            apply_error(form, exc)
        else:
            if chosen:
                messages.success(
                    request, _("Times are now shown in %(zone)s, here and in your emails.") % {"zone": chosen}
                )
            else:
                messages.success(request, _("Times now follow your browser's time zone; emails show UTC."))
            return redirect("portal-account")
    return _account_page(request, tz_form=form if request.method == "POST" else None)


def _account_language(request):
    form = LanguageForm(request.POST, prefix="lang")
    if form.is_valid():
        try:
            chosen = preferences.language_set(user=request.user, language=form.cleaned_data["language"])
        except BrokerError as exc:
            apply_error(form, exc)
        else:
            # The confirmation is read on the next page, which is already in the new language.
            with translation.override(chosen or translation.get_language_from_request(request)):
                if chosen:
                    text = _("The portal and your emails are now in %(language)s.") % {
                        "language": dict(settings.LANGUAGES)[chosen]
                    }
                else:
                    text = _("The portal now follows your browser's language; emails are in English.")
            messages.success(request, text)
            return redirect("portal-account")
    return _account_page(request, language_form=form)


# --- Personal API tokens --------------------------------------------------------------------------

LIFETIMES = [
    ("7", gettext_lazy("7 days")),
    ("30", gettext_lazy("30 days")),
    ("90", gettext_lazy("90 days")),
    ("366", gettext_lazy("1 year")),
]


class TokenForm(PortalForm):
    name = forms.CharField(
        label=gettext_lazy("Name"), max_length=100, help_text=gettext_lazy("What it is for, e.g. “laptop CLI”.")
    )
    scopes = forms.MultipleChoiceField(
        label=gettext_lazy("Scopes"), widget=forms.CheckboxSelectMultiple, initial=list(DEFAULT_SCOPES)
    )
    expires_in = forms.ChoiceField(label=gettext_lazy("Expires after"), choices=LIFETIMES, initial="30")

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
            token, text = token_create_for_self(
                user=request.user,
                scopes=form.cleaned_data["scopes"],
                expires_in=timedelta(days=int(form.cleaned_data["expires_in"])),
                name=form.cleaned_data["name"],
                mfa_at=stepup.mfa_at(request, form.cleaned_data.get("code"), via=Channel.PORTAL),
                via=Channel.PORTAL,
                ip=client_ip(request),
            )
        except BrokerError as exc:
            apply_error(form, exc)
            stepup.drop_code_if_fresh(request, form)
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
        messages.success(request, _("Token %(prefix)s… revoked; it stops working at once.") % {"prefix": token.prefix})
    return redirect("portal-tokens")
