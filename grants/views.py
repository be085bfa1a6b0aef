"""Portal pages for grants: follow one with its countdown, give it back, ask for more time, revoke, review.

Thin: reads through grants.selectors (permission filters built in), changes through the services.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from approvals import services as request_services
from approvals.forms import ExtensionForm
from approvals.models import AccessRequest
from broker import stepup
from broker.errors import BrokerError
from broker.http import client_ip
from broker.links import grant_path, request_path
from broker.models import Channel
from broker.portal import apply_error, drop_code_if_fresh, error_message, fresh_mfa, paginate, viewer
from broker.timeline import grant_timeline
from grants import selectors, services
from grants.forms import ReviewForm, RevokeForm
from grants.models import Grant

STATUSES = [s for s, _ in Grant.Status.choices]


def _visible(request, pk: int) -> Grant:
    return get_object_or_404(
        selectors.grants_visible_to(request.user).select_related("role", "user", "request", "ended_by", "reviewed_by"),
        pk=pk,
    )


@login_required
@require_GET
def grant_list(request):
    """My grants; everyone's for auditors and administrators (scope=all), filterable."""
    scope = request.GET.get("scope", "mine")
    status = request.GET.get("status", "")
    if scope == "all" and viewer(request).reads_everything:
        queryset = selectors.grants_visible_to(request.user)
    else:
        scope = "mine"
        queryset = Grant.objects.filter(user=request.user)
    if status == "live":
        queryset = queryset.filter(status__in=("scheduled", "active", "revoking", "revoke_failed"))
    elif status in STATUSES:
        queryset = queryset.filter(status=status)
    page = paginate(request, queryset.select_related("role", "user").order_by("-starts_at", "-pk"))
    return render(
        request, "portal/grant_list.html", {"page": page, "status": status, "statuses": STATUSES, "scope": scope}
    )


def _render_detail(request, grant: Grant, *, extension_form=None, revoke_form=None, review_form=None, status=200):
    now = timezone.now()
    own = grant.user_id == request.user.pk
    live = grant.status in (Grant.Status.SCHEDULED, Grant.Status.ACTIVE) and grant.expires_at > now
    who = viewer(request)
    extensions = list(grant.extension_requests.order_by("created_at").only("pk", "status", "duration", "created_at"))
    pending_extension = next((r for r in extensions if r.status == AccessRequest.Status.PENDING), None)
    room = services.extension_room(grant)
    needs_code = grant.role.requires_mfa or grant.role.break_glass
    if own and live and not pending_extension and extension_form is None and room.total_seconds() > 0:
        extension_form = ExtensionForm(
            role=grant.role, room=room, needs_code=needs_code and not stepup.is_recent(request)
        )
    may_revoke = who.staff and not own and grant.status in (Grant.Status.SCHEDULED, Grant.Status.ACTIVE)
    may_review = who.reviews_break_glass and grant.break_glass and grant.reviewed_at is None and not own
    context = {
        "grant": grant,
        "own": own,
        "live": live,
        "effective": grant.is_effective(now),
        "activating": grant.status == Grant.Status.SCHEDULED and grant.starts_at <= now,
        "extensions": extensions,
        "pending_extension": pending_extension,
        "room": room,
        "extension_form": extension_form if own and live and not pending_extension else None,
        "revoke_form": (revoke_form or RevokeForm()) if may_revoke else None,
        "review_form": (review_form or ReviewForm()) if may_review else None,
        "timeline": grant_timeline(grant, [r.pk for r in extensions]),
    }
    return render(request, "portal/grant_detail.html", context, status=status)


@login_required
@require_GET
def grant_detail(request, pk: int):
    return _render_detail(request, _visible(request, pk))


@login_required
@require_POST
def grant_relinquish(request, pk: int):
    grant = _visible(request, pk)
    try:
        grant = services.grant_relinquish(
            grant_id=grant.pk, user=request.user, via=Channel.PORTAL, ip=client_ip(request)
        )
    except BrokerError as exc:
        error_message(request, exc)
    else:
        done = "the access is removed" if grant.ended_at else "the access is being removed from the target"
        messages.success(request, f"You gave {grant.role.slug} back; {done}.")
    return redirect(grant_path(grant.pk))


@login_required
@require_POST
def grant_extend(request, pk: int):
    grant = _visible(request, pk)
    if grant.user_id != request.user.pk:
        raise PermissionDenied("only the holder asks for more time")
    role = grant.role
    needs_mfa = role.requires_mfa or role.break_glass
    form = ExtensionForm(
        request.POST,
        role=role,
        room=services.extension_room(grant),
        needs_code=needs_mfa and not stepup.is_recent(request),
    )
    if form.is_valid():
        try:
            mfa_at = fresh_mfa(request, form.cleaned_data.get("code")) if needs_mfa else None
            req = request_services.request_extension(
                grant_id=grant.pk,
                requester=request.user,
                duration=form.cleaned_data["duration_value"],
                justification=form.cleaned_data.get("justification", ""),
                ticket=form.cleaned_data.get("ticket", ""),
                via=Channel.PORTAL,
                ip=client_ip(request),
                mfa_at=mfa_at,
            )
        except BrokerError as exc:
            apply_error(form, exc)
            drop_code_if_fresh(request, form)
        else:
            if req.status == AccessRequest.Status.APPROVED:
                messages.success(request, "Extended.")
                return redirect(grant_path(grant.pk))
            messages.success(request, "Extension requested. Approvers have been asked.")
            return redirect(request_path(req.pk))
    return _render_detail(request, grant, extension_form=form, status=400)


@login_required
@require_POST
def grant_revoke(request, pk: int):
    """An administrator ends someone's grant early, with a reason."""
    grant = _visible(request, pk)
    if not viewer(request).staff:
        raise PermissionDenied("only administrators revoke grants")
    form = RevokeForm(request.POST)
    if form.is_valid():
        try:
            services.grant_revoke(
                grant_id=grant.pk,
                actor=request.user,
                reason=form.cleaned_data["reason"],
                via=Channel.PORTAL,
                ip=client_ip(request),
            )
        except BrokerError as exc:
            apply_error(form, exc)
        else:
            messages.success(request, f"Grant #{grant.pk} revoked: {grant.user} no longer holds {grant.role.slug}.")
            return redirect(grant_path(grant.pk))
    return _render_detail(request, grant, revoke_form=form, status=400)


@login_required
@require_POST
def grant_review(request, pk: int):
    """Mark a break-glass activation as reviewed after the fact."""
    grant = _visible(request, pk)
    if not viewer(request).reviews_break_glass:
        raise PermissionDenied("only administrators and security review break-glass activations")
    form = ReviewForm(request.POST)
    if form.is_valid():
        try:
            services.grant_review(
                grant_id=grant.pk,
                reviewer=request.user,
                note=form.cleaned_data["note"],
                via=Channel.PORTAL,
                ip=client_ip(request),
            )
        except BrokerError as exc:
            error_message(request, exc)
        else:
            messages.success(request, f"Break-glass grant #{grant.pk} marked as reviewed.")
        target = request.POST.get("next")
        return redirect("/review/" if target == "review" else grant_path(grant.pk))
    return _render_detail(request, grant, review_form=form, status=400)
