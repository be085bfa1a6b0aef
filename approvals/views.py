"""Portal pages for access requests: asking for a role, following a request, deciding as an approver.

Thin: reads go through approvals.selectors (which carry the permission filters), changes through
approvals.services, and domain errors come back as messages next to the fields.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import stepup
from approvals import recertification, rightsizing, selectors, services
from approvals.forms import DecisionForm
from approvals.models import AccessRequest
from broker.audit.timeline import request_timeline
from broker.catalog import eligible_roles
from broker.conditions import describe as describe_conditions
from broker.conditions import from_stored
from broker.durations import humanize_duration
from broker.errors import BrokerError
from broker.http import client_ip, device_posture
from broker.links import grant_path, inbox_path, request_path
from broker.models import Channel
from broker.portal.ask_form import AskForm
from broker.portal.helpers import apply_error, error_message, paginate, viewer
from grants import selectors as grant_selectors
from grants import services as grant_services
from grants import views as grant_views
from grants.models import Grant

STATUSES = [s for s, _ in AccessRequest.Status.choices]


def _list_rows(queryset):
    return queryset.select_related("role", "requester", "grant")


# --- Asking: a role, or more time on a grant -------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def request_new(request, slug: str):
    """Ask for a role: duration within its bounds, reasons where required, a code where MFA is required."""
    role = get_object_or_404(eligible_roles(request.user).prefetch_related("stages"), slug=slug)
    form, req = _ask(request, role=role)
    if req is not None:
        if req.status == AccessRequest.Status.APPROVED:
            names = {"role": role.name, "duration": humanize_duration(req.duration)}
            text = (
                _("%(role)s is yours for %(duration)s. Security has been notified; this activation will be reviewed.")
                if req.break_glass
                else _("%(role)s is yours for %(duration)s.")
            ) % names
            messages.success(request, text)
            return redirect(grant_path(req.grant.pk))
        messages.success(request, _("Request sent. Approvers of %(role)s have been asked.") % {"role": role.name})
        return redirect(request_path(req.pk))
    context = {
        "role": role,
        "form": form,
        "stages": selectors.role_approvers(role, requester=request.user),
        "conditions": describe_conditions(from_stored(role.conditions)),
        "needs_mfa": role.requires_step_up,
        "needs_code": "code" in form.fields,
    }
    return render(request, "portal/request_new.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def grant_extend(request, pk: int):
    """Ask for more time on my grant (the form is on the grant's page, which shows any error)."""
    grant = get_object_or_404(grant_selectors.grants_visible_to(request.user).select_related("role"), pk=pk)
    if grant.user_id != request.user.pk:
        raise PermissionDenied("only the holder asks for more time")
    form, req = _ask(request, role=grant.role, grant=grant)
    if req is None:
        return grant_views.render_detail(request, grant, extension_form=form, status=400)
    if req.status == AccessRequest.Status.APPROVED:
        messages.success(request, _("Extended."))
        return redirect(grant_path(grant.pk))
    messages.success(request, _("Extension requested. Approvers have been asked."))
    return redirect(request_path(req.pk))


def _ask(request, *, role, grant=None) -> tuple[AskForm, AccessRequest | None]:
    """The one ask path of the portal: validate the form, prove a fresh factor if needed, call the service."""
    # A form that carries the code field again after a flagged attempt (below) reads its code too.
    asked_for_code = role.requires_step_up or "code" in request.POST
    needs_code = asked_for_code and not stepup.is_recent(request)
    cap = grant_services.extension_room(grant) if grant is not None else None
    form = AskForm(request.POST or None, role=role, cap=cap, needs_code=needs_code)
    if request.method != "POST" or not form.is_valid():
        return form, None
    data = form.cleaned_data
    try:
        # Also for roles without MFA: a request the anomaly scoring flags needs a step-up too.
        mfa_at = stepup.mfa_at(request, data.get("code"), via=Channel.PORTAL)
        req = services.request_create(
            requester=request.user,
            role=role,
            extends_grant_id=grant.pk if grant is not None else None,
            duration=data["duration_value"],
            justification=data.get("justification", ""),
            ticket=data.get("ticket", ""),
            starts_at=data.get("starts_at"),
            resource=data.get("resource", ""),
            via=Channel.PORTAL,
            ip=client_ip(request),
            posture=device_posture(request),
            mfa_at=mfa_at,
        )
    except BrokerError as exc:
        if exc.code == "mfa_required" and "code" not in form.fields:
            # Flagged as unusual: show the form again, now with the code field, and why.
            form = AskForm(request.POST, role=role, cap=cap, needs_code=True)
            if not form.is_valid() and "code" in form.errors:
                del form.errors["code"]  # the service's sentence below says what is needed, and why
        apply_error(form, exc)
        stepup.drop_code_if_fresh(request, form)
        return form, None
    return form, req


@login_required
@require_GET
def request_list(request):
    """Requests the viewer may see: their own, or everyone's for auditors and administrators."""
    status = request.GET.get("status", "")
    scope = request.GET.get("scope", "mine")
    queryset = selectors.requests_of(request.user) if scope == "mine" else selectors.requests_visible_to(request.user)
    if status in STATUSES:
        queryset = queryset.filter(status=status)
    # Flagged only: the requests the anomaly scoring found unusual (what auditors go through).
    flagged = request.GET.get("flagged", "") == "1"
    if flagged:
        queryset = queryset.filter(flagged=True)
    page = paginate(request, _list_rows(queryset.order_by("-created_at", "-pk")))
    context = {"page": page, "status": status, "statuses": STATUSES, "scope": scope, "flagged": flagged}
    return render(request, "portal/request_list.html", context)


@login_required
@require_GET
def request_detail(request, pk: int):
    req = get_object_or_404(
        selectors.requests_visible_to(request.user).select_related("role", "requester", "extends_grant"), pk=pk
    )
    return _render_detail(request, req)


def _render_detail(request, req: AccessRequest, form: DecisionForm | None = None, status: int = 200):
    grant = Grant.objects.filter(request=req).first()
    req.grant_obj = grant
    may_decide = services.may_decide(req, request.user)
    needs_code = not stepup.is_recent(request)
    if may_decide and form is None:
        form = DecisionForm(needs_code=needs_code)
    context = {
        "req": req,
        "grant": grant,
        "progress": selectors.request_progress(req),
        "timeline": request_timeline(req, for_auditor=viewer(request).reads_everything),
        "may_decide": may_decide,
        "may_cancel": req.is_pending and req.requester_id == request.user.pk,
        "form": form if may_decide else None,
        "needs_code": needs_code,
        "own": req.requester_id == request.user.pk,
    }
    return render(request, "portal/request_detail.html", context, status=status)


@login_required
@require_POST
def request_cancel(request, pk: int):
    req = get_object_or_404(selectors.requests_visible_to(request.user), pk=pk)
    try:
        services.request_cancel(request_id=req.pk, requester=request.user, via=Channel.PORTAL, ip=client_ip(request))
    except BrokerError as exc:
        error_message(request, exc)
    else:
        messages.success(request, _("Request #%(pk)s withdrawn.") % {"pk": req.pk})
    return redirect(request_path(req.pk))


# --- Deciding -------------------------------------------------------------------------------------


@login_required
@require_POST
def request_decide(request, pk: int):
    """Approve or deny with a comment, after a step-up: the code goes in the same form."""
    req = get_object_or_404(selectors.requests_visible_to(request.user).select_related("role", "requester"), pk=pk)
    form = DecisionForm(request.POST, needs_code=not stepup.is_recent(request), verdict=request.POST.get("verdict"))
    if not form.is_valid():
        return _render_detail(request, req, form, status=400)
    verdict, comment = form.cleaned_data["verdict"], form.cleaned_data.get("comment", "")
    try:
        mfa_at = stepup.mfa_at(request, form.cleaned_data.get("code"), via=Channel.PORTAL)
        if verdict == "approve":
            req = services.request_approve(
                request_id=req.pk,
                approver=request.user,
                comment=comment,
                via=Channel.PORTAL,
                ip=client_ip(request),
                mfa_at=mfa_at,
            )
        else:
            req = services.request_deny(
                request_id=req.pk,
                approver=request.user,
                comment=comment,
                via=Channel.PORTAL,
                ip=client_ip(request),
                mfa_at=mfa_at,
            )
    except BrokerError as exc:
        req.refresh_from_db()
        if services.may_decide(req, request.user):
            apply_error(form, exc)
            stepup.drop_code_if_fresh(request, form)
        else:
            # Not (or no longer) theirs to decide: there is no form to show the error in.
            error_message(request, exc)
        return _render_detail(request, req, form, status=400)
    names = {"pk": req.pk, "who": req.requester, "role": req.role.slug}
    if verdict != "approve":
        text = _("Request #%(pk)s (%(who)s → %(role)s) denied.")
    elif req.status == "approved":
        text = _("Request #%(pk)s (%(who)s → %(role)s) approved; the grant is being switched on.")
    else:
        text = _("Request #%(pk)s (%(who)s → %(role)s) approved (more stages).")
    messages.success(request, text % names)
    return redirect(inbox_path())


@login_required
@require_GET
def inbox(request):
    """Requests waiting for my decision, oldest first, with the facts needed to decide."""
    page = paginate(request, _list_rows(selectors.requests_awaiting(request.user)))
    return render(request, "portal/inbox.html", {"page": page})


@login_required
@require_GET
def decided(request):
    page = paginate(request, _list_rows(selectors.requests_decided_by(request.user)))
    return render(request, "portal/decided.html", {"page": page})


# --- Right-sizing (auditors, administrators) ---------------------------------------------------------


@login_required
@require_GET
def eligibility_unused(request):
    """Eligibilities nobody used within their role's unused_after: what to take out of the policy file."""
    if not viewer(request).reads_everything:
        raise PermissionDenied("the unused eligibilities are for auditors and administrators")
    return render(
        request,
        "portal/eligibility_unused.html",
        {"unused": rightsizing.unused_eligibilities(), "section": "review"},
    )


# --- Recertification: eligibility reviews (role owners) ------------------------------------------------


@login_required
@require_GET
def reviews(request):
    """The eligibility reviews waiting for the viewer (as an owner, or escalated to them), and the latest decided."""
    visible = recertification.reviews_for(request.user)
    waiting = [
        t
        for t in visible.filter(status="pending").order_by("due_at", "pk")
        if recertification.may_decide(t, request.user)
    ]
    decided = paginate(request, visible.exclude(status="pending").order_by("-decided_at", "-pk"))
    return render(request, "portal/reviews.html", {"waiting": waiting, "decided": decided, "section": "approvals"})


@login_required
@require_POST
def review_decide(request, pk: int):
    task = get_object_or_404(recertification.reviews_for(request.user), pk=pk)
    verdict = request.POST.get("verdict", "")
    try:
        recertification.recertification_decide(
            task_id=task.pk,
            reviewer=request.user,
            verdict=verdict,
            comment=request.POST.get("comment", ""),
            via=Channel.PORTAL,
            ip=client_ip(request),
        )
    except BrokerError as exc:
        error_message(request, exc)
    else:
        if verdict == "confirm":
            messages.success(
                request, _("Confirmed: %(who)s may still ask for %(role)s.") % {"who": task.who, "role": task.role.slug}
            )
        else:
            messages.success(
                request,
                _("Removed: %(who)s may no longer ask for %(role)s. Take it out of the policy file too (export below).")
                % {"who": task.who, "role": task.role.slug},
            )
    return redirect("reviews")


@login_required
@require_GET
def reviews_patch(request):
    """The removals among the reviews the viewer sees, as the change to make in the policy file."""
    text = recertification.policy_patch(recertification.reviews_for(request.user))
    response = HttpResponse(text, content_type="text/yaml; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="eligibility-review-patch.yaml"'
    return response
