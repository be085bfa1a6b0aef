"""The audit log for auditors and administrators: the trail, its chain status, and exports."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_GET

from broker.audit.export import FORMATS, export_response
from broker.audit.status import chain_status
from broker.audit.timeline import describe
from broker.http import client_ip
from broker.models import AuditEvent, Channel
from broker.portal.helpers import PortalForm, paginate, viewer

AUDIT_PAGE_SIZE = 50


def _require_reader(request) -> None:
    if not request.user.is_authenticated:
        raise PermissionDenied
    if not viewer(request).reads_everything:
        raise PermissionDenied("the audit trail is for auditors and administrators")


# --- Audit log ------------------------------------------------------------------------------------


class AuditFilter(PortalForm):
    actor = forms.CharField(
        label=gettext_lazy("Actor"), required=False, max_length=150, help_text=gettext_lazy("Username, or “system”.")
    )
    subject = forms.CharField(
        label=gettext_lazy("Subject"),
        required=False,
        max_length=150,
        help_text=gettext_lazy("Whose access it is about."),
    )
    role = forms.CharField(
        label=gettext_lazy("Role"), required=False, max_length=64, help_text=gettext_lazy("Role slug.")
    )
    action = forms.CharField(
        label=gettext_lazy("Action"),
        required=False,
        max_length=64,
        help_text=gettext_lazy("Prefix: “grant.” or “request.approved”."),
    )
    channel = forms.ChoiceField(
        label=gettext_lazy("Channel"), required=False, choices=[("", gettext_lazy("Any"))] + Channel.choices
    )
    since = forms.DateTimeField(
        label=pgettext_lazy("since", "From"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    until = forms.DateTimeField(
        label=gettext_lazy("Until"),
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
    for event in page.object_list:
        event.entry = describe(event)
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "portal/audit_log.html",
        {
            "form": form,
            "page": page,
            # The scheduled full walk's stored outcome, plus the events since verified now (bounded).
            "chain": chain_status(),
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
