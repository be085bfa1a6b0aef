"""The Django admin's site: a verified second factor to enter, a fresh step-up to change what matters.

- Entering needs a session verified by a second factor (django-otp's ``OTPAdminSite``): the admin's
  own sign-in asks for the password and a one-time code together; a session signed in through the
  portal but not verified is sent to the portal's step-up page (or enrolment) and back. Any portal
  step-up (``accounts.stepup.mark_verified``, which calls ``django_otp.login``) counts, and so does a
  strong authentication at the company's identity provider in this session (accounts/oidc.py).
- With LOCAL_LOGIN=off, the admin's own sign-in (password and one-time code) is the break-glass
  path: superusers only, audited with ``break_glass``.
- Changing what a ModelAdmin marks with ``step_up_for_changes`` (the catalog, users, groups, second
  factors) needs a step-up within MFA_STEP_UP_WINDOW: opening an add, change or delete page, or
  posting to its list (actions), sends a stale session to verify and back to the same page.

The ModelAdmins themselves declare what needs it; the kernel's admin (broker/admin.py) cannot import
accounts, so the rule is enforced here, where every admin view is wrapped.
"""

from __future__ import annotations

from functools import update_wrapper

from django.conf import settings
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django_otp.admin import OTPAdminSite

from accounts import stepup
from accounts.events import record_auth_event
from accounts.login import ThrottledOTPAdminAuthenticationForm
from broker.http import client_ip

# ModelAdmin views that open or send a form that changes rows (the list only when it posts: actions).
_CHANGE_VIEWS = {"add_view", "change_view", "delete_view", "user_change_password"}


class BrokerAdminSite(OTPAdminSite):
    site_header = "Privileged access broker"
    site_title = "Access broker admin"
    login_form = ThrottledOTPAdminAuthenticationForm
    login_template = "admin/login_otp.html"

    def __init__(self, name: str = "admin"):
        # OTPAdminSite names itself "otpadmin"; ours stays the admin at /admin/ with its usual URL names.
        super().__init__(name)

    def has_permission(self, request):
        verified = request.user.is_verified() or stepup.verified_by_idp(request)
        return AdminSite.has_permission(self, request) and verified

    def login(self, request, extra_context=None):
        user = request.user
        if user.is_active and user.is_staff and not self.has_permission(request):
            # Signed in (through the portal) without a verified second factor in this session.
            target = request.GET.get(REDIRECT_FIELD_NAME) or reverse("admin:index", current_app=self.name)
            return redirect(stepup.step_up_url(request, target))
        response = super().login(request, extra_context)
        device = getattr(request.user, "otp_device", None)
        if request.method == "POST" and response.status_code == 302 and device is not None:
            # The code typed with the password is a fresh verification, as on the step-up page.
            stepup.mark_verified(request, device)
            record_auth_event(
                "auth.login",
                user=request.user,
                ip=client_ip(request),
                data={"admin": True, "second_factor": True, "break_glass": not settings.LOCAL_LOGIN},
            )
        return response

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)
        model_admin = getattr(view, "__self__", None)
        if not getattr(model_admin, "step_up_for_changes", False):
            return inner
        name = view.__name__

        def guarded(request, *args, **kwargs):
            changes = name in _CHANGE_VIEWS or (name == "changelist_view" and request.method == "POST")
            if changes and self.has_permission(request) and not stepup.is_recent(request):
                messages.info(
                    request,
                    _(
                        "Changing this in the admin needs a second factor verified within the last few minutes; "
                        "you will come back to the page afterwards."
                    ),
                )
                return redirect(stepup.step_up_url(request, request.get_full_path()))
            return inner(request, *args, **kwargs)

        return update_wrapper(guarded, inner)
