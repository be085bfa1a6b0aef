"""Pages for auditors and administrators: the audit log with its chain status and exports, and the
elevation review (who held what, when, for how long) with the post-hoc review of break-glass.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from broker import audit
from broker.audit_export import FORMATS, export_response
from broker.charts import horizontal_bars, stacked_days
from broker.http import client_ip
from broker.models import AuditEvent, Channel
from broker.portal import PortalForm, paginate, viewer
from grants.forms import ReviewForm
from grants.selectors import break_glass_awaiting_review, elevation_review, grants_in_period, held_interval

AUDIT_PAGE_SIZE = 50
MAX_REVIEW_DAYS = 92


def _require_reader(request) -> None:
    if not request.user.is_authenticated:
        raise PermissionDenied
    if not viewer(request).reads_everything:
        raise PermissionDenied("the audit trail is for auditors and administrators")


# --- Audit log ------------------------------------------------------------------------------------


class AuditFilter(PortalForm):
    actor = forms.CharField(label="Actor", required=False, max_length=150, help_text="Username, or “system”.")
    subject = forms.CharField(label="Subject", required=False, max_length=150, help_text="Whose access it is about.")
    role = forms.CharField(label="Role", required=False, max_length=64, help_text="Role slug.")
    action = forms.CharField(
        label="Action", required=False, max_length=64, help_text="Prefix: “grant.” or “request.approved”."
    )
    channel = forms.ChoiceField(label="Channel", required=False, choices=[("", "Any")] + Channel.choices)
    since = forms.DateTimeField(
        label="From",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    until = forms.DateTimeField(
        label="Until",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def filter(self, queryset):
        data = self.cleaned_data
        if data.get("actor"):
            queryset = queryset.filter(actor_name=data["actor"].strip())
        if data.get("subject"):
            queryset = queryset.filter(subject=data["subject"].strip())
        if data.get("role"):
            queryset = queryset.filter(role=data["role"].strip())
        if data.get("action"):
            queryset = queryset.filter(action__startswith=data["action"].strip())
        if data.get("channel"):
            queryset = queryset.filter(channel=data["channel"])
        if data.get("since"):
            queryset = queryset.filter(at__gte=data["since"])
        if data.get("until"):
            queryset = queryset.filter(at__lt=data["until"])
        return queryset


def _filtered(request) -> tuple[AuditFilter, object]:
    form = AuditFilter(request.GET or None)
    queryset = AuditEvent.objects.all()
    if form.is_bound and form.is_valid():
        queryset = form.filter(queryset)
    elif form.is_bound:
        queryset = queryset.none()
    return form, queryset


@login_required
@require_GET
def audit_log(request):
    _require_reader(request)
    form, queryset = _filtered(request)
    page = paginate(request, queryset.order_by("-seq"), per_page=AUDIT_PAGE_SIZE)
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "portal/audit_log.html",
        {
            "form": form,
            "page": page,
            "chain": audit.verify(),
            "export_query": params.urlencode(),
            "filtered": any(v for k, v in request.GET.items() if k != "page"),
        },
    )


@login_required
@require_GET
def audit_export(request):
    """The current filter as CSV or JSON Lines, streamed oldest first (any size, constant memory)."""
    _require_reader(request)
    _form, queryset = _filtered(request)
    fmt = request.GET.get("format", "csv")
    return export_response(
        queryset,
        fmt if fmt in FORMATS else "csv",
        actor=request.user,
        via=Channel.PORTAL,
        ip=client_ip(request),
        params=request.GET,
    )


# --- Elevation review -----------------------------------------------------------------------------


class PeriodForm(PortalForm):
    since = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until:
            if until < since:
                self.add_error("until", "The end comes before the start.")
            elif (until - since).days + 1 > MAX_REVIEW_DAYS:
                self.add_error("until", f"Choose at most {MAX_REVIEW_DAYS} days.")
        return data


@login_required
@require_GET
def review(request):
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
    figures = elevation_review(start, end, tz)
    grants = paginate(
        request, grants_in_period(start, end).select_related("role", "user").order_by("-starts_at", "-pk")
    )
    now = timezone.now()
    for grant in grants:
        interval = held_interval(grant, now)
        grant.held = (min(interval[1], now) - interval[0]) if interval else None
    awaiting = paginate(
        request,
        break_glass_awaiting_review().select_related("role", "user", "request").order_by("starts_at", "pk"),
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
