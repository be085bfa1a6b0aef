"""Getting back in after a password was revoked or forgotten: Django's password reset, audited.

``password_revoke`` is what a ``credential_compromised`` signal does to the password: unusable at
once (it signs in nowhere), recorded in ``CredentialState.password_revoked_at``. Django's reset
form only mails people whose password is usable (an unusable one usually means sign-in elsewhere,
such as SSO); ours also mails those whose password a risk signal revoked, so that they can choose a
new one through the link sent to their address. An administrator can also set a new password
(admin → Users → the person → "change password form"), which is audited as ``admin.changed``.

Reset requests are counted per address and per email address with the sign-in limits (they send
mail); a completed reset is audited and, since the password hash changes, ends every other session.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm, SetPasswordForm
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.http import Http404
from django.urls import path, reverse_lazy
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import ratelimit
from accounts.events import record_auth_event
from accounts.models import CredentialState
from accounts.sessions import lock_state
from broker.http import client_ip

User = get_user_model()


def password_revoke(
    *, user: AbstractBaseUser, actor: AbstractBaseUser | None, reason: str, via: str, ip: str | None = None,
    now: datetime | None = None,
) -> None:  # fmt: skip
    """Make the password unusable now (no sign-in with it anywhere); audited."""
    now = now or timezone.now()
    with transaction.atomic():
        state = lock_state(user)
        user.set_unusable_password()
        user.save(update_fields=["password"])
        state.password_revoked_at = now
        state.save(update_fields=["password_revoked_at"])
        record_auth_event("auth.password_revoked", user=user, actor=actor, via=via, ip=ip, data={"reason": reason})


class ResetRequestForm(PasswordResetForm):
    """Django's form, also for people whose password a risk signal revoked."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["email"].label = _("Email address")

    def get_users(self, email):
        field = User.get_email_field_name()
        candidates = list(User._default_manager.filter(**{f"{field}__iexact": email, "is_active": True}))
        revoked = set(
            CredentialState.objects.filter(user__in=candidates, password_revoked_at__isnull=False).values_list(
                "user_id", flat=True
            )
        )
        for user in candidates:
            if getattr(user, field, "").casefold() != email.casefold():
                continue
            if user.has_usable_password() or user.pk in revoked:
                yield user


class PasswordResetView(auth_views.PasswordResetView):
    form_class = ResetRequestForm
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("password_reset_done")

    @property
    def extra_email_context(self) -> dict:
        # Links point at SITE_URL, like every link the broker mails, never at a Host header.
        return {"site_url": settings.SITE_URL}

    def form_valid(self, form):
        window = settings.LOGIN_LOCKOUT.total_seconds()
        ip = client_ip(self.request) or "unknown"
        email = form.cleaned_data["email"]
        limits = [
            ("reset-ip", ip, settings.LOGIN_MAX_FAILURES_PER_IP),
            ("reset-email", email, settings.LOGIN_MAX_FAILURES_PER_USER),
        ]
        if any(ratelimit.fail(scope, ident, limit=limit, window=window) for scope, ident, limit in limits):
            # Same page as a success: who has an account is not for strangers to learn.
            return super(auth_views.PasswordResetView, self).form_valid(form)
        return super().form_valid(form)


class NewPasswordForm(SetPasswordForm):
    """Django's form with the portal's labels and a help text in one sentence (not the validators' list)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["new_password1"].label = _("New password")
        self.fields["new_password1"].help_text = _("At least 12 characters, not a common password, not like your name.")
        self.fields["new_password2"].label = _("The same again")


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    form_class = NewPasswordForm
    success_url = reverse_lazy("password_reset_complete")

    def form_valid(self, form):
        with transaction.atomic():
            response = super().form_valid(form)
            CredentialState.objects.filter(user=form.user).update(password_revoked_at=None)
            record_auth_event("auth.password_reset", user=form.user, ip=client_ip(self.request), data={})
        return response


def _local_only(view):
    """Password resets exist only while local passwords do (LOCAL_LOGIN)."""

    def wrapper(request, *args, **kwargs):
        if not settings.LOCAL_LOGIN:
            raise Http404("local passwords are switched off")
        return view(request, *args, **kwargs)

    return wrapper


urlpatterns = [
    path("account/password-reset/", _local_only(PasswordResetView.as_view()), name="password_reset"),
    path(
        "account/password-reset/sent/",
        _local_only(auth_views.PasswordResetDoneView.as_view()),
        name="password_reset_done",
    ),
    path(
        "account/password-reset/<uidb64>/<token>/",
        _local_only(PasswordResetConfirmView.as_view()),
        name="password_reset_confirm",
    ),
    path(
        "account/password-reset/done/",
        _local_only(auth_views.PasswordResetCompleteView.as_view()),
        name="password_reset_complete",
    ),
]
