"""Portal pages for grants: follow one with its countdown, give it back, revoke, review; the elevation review.

Thin: reads through grants.selectors (permission filters built in), changes through the services.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts import stepup
from broker.audit.timeline import grant_timeline
from broker.errors import BrokerError
from broker.http import client_ip
from broker.links import grant_path
from broker.models import Channel
from broker.portal.ask_form import AskForm
from broker.portal.charts import horizontal_bars, stacked_days
from broker.portal.helpers import apply_error, error_message, paginate, viewer
from grants import selectors, services
from grants.forms import PeriodForm, ReviewForm, RevokeForm
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
        queryset = queryset.unfinished()
    elif status in STATUSES:
        queryset = queryset.filter(status=status)
    page = paginate(request, queryset.select_related("role", "user").order_by("-starts_at", "-pk"))
    return render(
        request, "portal/grant_list.html", {"page": page, "status": status, "statuses": STATUSES, "scope": scope}
    )


def render_detail(request, grant: Grant, *, extension_form=None, revoke_form=None, review_form=None, status=200):
    now = timezone.now()
    own = grant.user_id == request.user.pk
    live = grant.is_running(now)
    who = viewer(request)
    extensions = list(grant.extension_requests.order_by("created_at").only("pk", "status", "duration", "created_at"))
    pending_extension = next((r for r in extensions if r.is_pending), None)
    room = services.extension_room(grant)
    if own and live and not pending_extension and extension_form is None and room.total_seconds() > 0:
        # Submitted to approvals' ask view (grants/<pk>/extend/), which shows errors on this page.
        extension_form = AskForm(
            role=grant.role, cap=room, needs_code=grant.role.requires_step_up and not stepup.is_recent(request)
        )
    may_revoke = who.staff and not own and grant.is_live
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
        "timeline": grant_timeline(grant, [r.pk for r in extensions], for_auditor=who.reads_everything),
    }
    return render(request, "portal/grant_detail.html", context, status=status)


@login_required
@require_GET
def grant_detail(request, pk: int):
    return render_detail(request, _visible(request, pk))


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
        text = (
            _("You gave %(role)s back; the access is removed.")
            if grant.ended_at
            else _("You gave %(role)s back; the access is being removed from the target.")
        )
        messages.success(request, text % {"role": grant.role.slug})
    return redirect(grant_path(grant.pk))


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
            messages.success(
                request,
                _("Grant #%(pk)s revoked: %(who)s no longer holds %(role)s.")
                % {"pk": grant.pk, "who": grant.user, "role": grant.role.slug},
            )
            return redirect(grant_path(grant.pk))
    return render_detail(request, grant, revoke_form=form, status=400)


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
            messages.success(request, _("Break-glass grant #%(pk)s marked as reviewed.") % {"pk": grant.pk})
        target = request.POST.get("next")
        return redirect("/review/" if target == "review" else grant_path(grant.pk))
    return render_detail(request, grant, review_form=form, status=400)


# --- Elevation review (auditors, administrators, security) -----------------------------------------------------------------------------


@login_required
@require_GET
def elevation_review(request):
    """Who held which role, when and for how long; break-glass activations awaiting review."""
    if not request.user.is_authenticated or not viewer(request).sees_review:
        raise PermissionDenied("the elevation review is for auditors, administrators and security")
    today = timezone.localdate()
    form = PeriodForm(request.GET or None, initial={"since": today - timedelta(days=6), "until": today})
    since, until = today - timedelta(days=6), today
    if form.is_bound and form.is_valid():
        since, until = form.cleaned_data["since"], form.cleaned_data["until"]
    elif not form.is_bound:
        form = PeriodForm(initial={"since": since, "until": until})
    tz = timezone.get_current_timezone()
    start = timezone.make_aware(datetime.combine(since, time.min), tz)
    end = timezone.make_aware(datetime.combine(until + timedelta(days=1), time.min), tz)
    # Every figure, chart and row comes through the selectors' permission filter: security members
    # who are not auditors see the break-glass grants they review, not everyone's.
    figures = selectors.elevation_review(request.user, start, end, tz)
    grants = paginate(
        request,
        selectors.grants_in_period(request.user, start, end)
        .select_related("role", "user")
        .order_by("-starts_at", "-pk"),
    )
    now = timezone.now()
    for grant in grants:
        interval = selectors.held_interval(grant, now)
        grant.held = (min(interval[1], now) - interval[0]) if interval else None
    awaiting = paginate(
        request,
        selectors.break_glass_awaiting_review(request.user)
        .select_related("role", "user", "request")
        .order_by("starts_at", "pk"),
        param="bgpage",
    )
    return render(
        request,
        "portal/review.html",
        {
            "form": form,
            "since": since,
            "until": until,
            "figures": figures,
            "days_chart": stacked_days(figures.days, figures.per_day),
            "hours_chart": horizontal_bars(figures.hours_per_user[:20]),
            "grants": grants,
            "awaiting": awaiting,
            "review_form": ReviewForm() if viewer(request).reviews_break_glass else None,
            "now": now,
        },
    )
