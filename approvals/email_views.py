"""The page behind an approver email link. Opening it changes nothing; deciding is a signed-in POST.

Mail scanners (Safe Links, Proofpoint) open every link and may run its scripts, so GET and HEAD
only render the facts. The decision needs CSRF, the approver's own session and a fresh step-up
(the code can be typed on this page). Refusals say why without telling a stranger anything about
the request. Each refusal of a link we signed is audited; links whose signature does not verify
(anyone can make those up) are counted per client address instead, with one audit event per
address and window once they pass EMAIL_LINK_FAILURE_LIMIT, and answered 429 from then on.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods
from django_otp import user_has_device

from accounts import stepup
from approvals import email_links
from approvals.email_links import REFUSAL_TEXT, LinkRefused, Outcome
from approvals.models import AccessRequest, Decision
from broker import links
from broker.errors import BrokerError
from broker.http import client_ip
from broker.models import Channel
from broker.portal.helpers import PortalForm, apply_error
from broker.portal.middleware import use_server_zone

REFUSAL_STATUS = {Outcome.INVALID: 400, Outcome.WRONG_USER: 403}
THROTTLED_TEXT = _(
    "Too many links that are not valid were opened from your address. Wait a while, then open the link "
    "again from the email."
)


class DecisionForm(PortalForm):
    """Comment and code; the decision is the button pressed (``decision``: approve or deny)."""

    comment = forms.CharField(
        label=_("Comment"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Required to deny; the requester sees it."),
    )
    code = forms.CharField(
        label=_("One-time code"),
        required=False,
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        help_text=_("The current code from your authenticator app (or a backup code)."),
    )

    def clean(self):
        data = super().clean()
        decision = self.data.get("decision")
        if decision not in ("approve", "deny"):
            raise forms.ValidationError(_("Press Approve or Deny."))
        data["decision"] = decision
        return data


# The token is in the page's URL, so no Referer may carry the path anywhere; but the form's POST
# must carry a real Origin, or Django's CSRF check refuses it (browsers send "Origin: null" under
# no-referrer). strict-origin does both: a Referer is at most the origin (https://host/), never the
# path, and same-origin requests carry the real Origin, which Django's ordinary check accepts.
REFERRER_POLICY = "strict-origin"


def _headers(response):
    # Never cache the page, never send the token on in a Referer.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = REFERRER_POLICY
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _refuse_unsigned(request):
    """A link whose signature does not verify: counted per address, not audited one by one."""
    wait = email_links.record_unsigned(ip=client_ip(request), method=request.method)
    if wait is None:
        return _refusal_page(request, Outcome.INVALID, REFUSAL_TEXT[Outcome.INVALID], status=400)
    response = _refusal_page(request, Outcome.INVALID, THROTTLED_TEXT, status=429)
    response["Retry-After"] = str(wait)
    return response


def _refusal_page(request, reason: str, message: str, *, status: int, request_url: str | None = None):
    context = {
        "message": message,
        "reason": reason,
        "request_url": request_url,
        "inbox_url": links.inbox_path(),
        # Signing out of the wrong account leads to the sign-in page, and back to this link.
        "login_url": redirect_to_login(request.path)["Location"],
    }
    return _headers(render(request, "approvals/email_link_refused.html", context, status=status))


def _refuse(request, reason: str, link=None):
    email_links.record_refusal(reason, link=link, user=request.user, ip=client_ip(request), method=request.method)
    is_approver = link is not None and request.user.is_authenticated and request.user.pk == link.approver_id
    # Only the approver the link was sent to learns which request it was about.
    request_url = links.request_path(link.request_id) if is_approver else None
    return _refusal_page(
        request, reason, REFUSAL_TEXT[reason], status=REFUSAL_STATUS.get(reason, 410), request_url=request_url
    )


def _facts(req: AccessRequest) -> dict:
    return {
        "req": req,
        "stage": req.current_stage + 1,
        "stages": req.role.stages.count(),
        "decisions": list(req.decisions.select_related("approver").order_by("created_at")),
        "request_url": links.request_path(req.pk),
    }


@require_http_methods(["GET", "HEAD", "POST"])
def approval_link(request, token: str):
    check = email_links.link_check(token)
    if not check.signed:
        return _refuse_unsigned(request)
    if not check.ok:
        return _refuse(request, check.outcome, check.link)
    link = check.link
    if request.user.is_authenticated and request.user.pk != link.approver_id:
        return _refuse(request, Outcome.WRONG_USER, link)
    if request.method == "POST" and not request.user.is_authenticated:
        # Sign in, then come back to this page and decide (the POST itself is not replayed).
        return _headers(redirect_to_login(request.path))

    if not request.user.is_authenticated:
        # Whoever opens the link before signing in (a mail scanner, a forwarded email) gets the
        # server's zone, named on the page: a browser's zone says nothing about who is reading.
        use_server_zone(request)
    form = DecisionForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        approve = form.cleaned_data["decision"] == "approve"
        try:
            mfa_at = stepup.mfa_at(request, form.cleaned_data["code"], via=Channel.EMAIL)
            req = email_links.link_decide(
                token=token,
                user=request.user,
                approve=approve,
                comment=form.cleaned_data["comment"],
                mfa_at=mfa_at,
                ip=client_ip(request),
            )
        except LinkRefused as exc:
            return _refuse(request, exc.reason, link)
        except BrokerError as exc:
            apply_error(form, exc)
        else:
            context = {
                "req": req,
                "approved": approve,
                "final": req.status != AccessRequest.Status.PENDING,
                "request_url": links.request_path(req.pk),
                "inbox_url": links.inbox_path(),
            }
            return _headers(render(request, "approvals/email_link_done.html", context))

    context = {
        **_facts(link.request),
        "form": form,
        "signed_in": request.user.is_authenticated,
        "fresh": request.user.is_authenticated and stepup.is_recent(request),
        "needs_enrolment": request.user.is_authenticated and not user_has_device(request.user),
        "step_up_url": stepup.step_up_url(request, request.path) if request.user.is_authenticated else "",
        "login_url": redirect_to_login(request.path)["Location"],
        "deny_verdict": Decision.Verdict.DENY,
    }
    status = 400 if form.errors else 200
    return _headers(render(request, "approvals/email_link.html", context, status=status))
