"""People in the admin: users and groups (audited, behind a fresh step-up), second factors, API tokens.

Changes to a user (``is_active``, ``is_staff``, ``is_superuser``, groups, password, ...) and to a
group (its members too) are written as ``admin.changed``, like the catalog's (broker/admin.py);
events about a person go through ``record_auth_event`` so that the person is the subject.
Second factors are listed and can be removed (a lost phone), never added here: a device added by
someone else would be a second factor its owner never proved (people enrol in the portal).
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.db import transaction
from django.template.response import TemplateResponse
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.enrolment import enrolment_code_issue
from accounts.events import record_auth_event
from accounts.models import ApiToken, ExternalIdentity
from accounts.tokens import token_revoke
from broker.admin import ADMIN_CHANGED, AuditedAdmin, ReadOnlyAdmin, plain
from broker.http import client_ip
from broker.models import Channel

User = get_user_model()


def _reregister(model, admin_class) -> None:
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, admin_class)


class PersonAudit:
    """admin.changed about a person: the person is the subject (accounts.events)."""

    def audit_person(self, request, person, data: dict) -> None:
        record_auth_event(ADMIN_CHANGED, user=person, actor=request.user, ip=client_ip(request), data=data)


class UserAdmin(PersonAudit, AuditedAdmin, DjangoUserAdmin):
    actions = ("issue_enrolment_code",)

    @admin.action(description="Issue an MFA enrolment code (shown once)")
    def issue_enrolment_code(self, request, queryset):
        """A single-use code per person for their first second factor (MFA_ENROLMENT_CODE_REQUIRED)."""
        issued = [
            (person, enrolment_code_issue(user=person, actor=request.user, via=Channel.PORTAL, ip=client_ip(request)))
            for person in queryset.filter(is_active=True).order_by("username")
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "MFA enrolment codes",
            "issued": issued,
            "lifetime": settings.MFA_ENROLMENT_CODE_LIFETIME,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/accounts/enrolment_codes.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def audit_change(self, request, obj, *, operation, changes=None):
        self.audit_person(request, obj, self.audit_data(obj, operation=operation, changes=changes))

    def user_change_password(self, request, id, form_url=""):
        with transaction.atomic():
            response = super().user_change_password(request, id, form_url)
            if request.method == "POST" and response.status_code == 302:
                person = User.objects.get(pk=id)
                changes = {"password": {"changed": True}}
                self.audit_change(request, person, operation="changed", changes=changes)
        return response


class GroupForm(forms.ModelForm):
    """Django's group form plus its members, so that membership can be managed from the group."""

    members = forms.ModelMultipleChoiceField(
        queryset=User.objects.order_by("username"),
        required=False,
        widget=FilteredSelectMultiple("members", is_stacked=False),
    )

    class Meta:
        model = Group
        fields = ["name", "members", "permissions"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["members"] = list(self.instance.user_set.all())


class GroupAdmin(AuditedAdmin, DjangoGroupAdmin):
    form = GroupForm

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        form.instance.user_set.set(form.cleaned_data["members"])

    def audit_data(self, obj, *, operation, changes):
        data = super().audit_data(obj, operation=operation, changes=changes)
        members = (changes or {}).get("members")
        if members:
            before, after = set(members.get("from") or []), set(members.get("to") or [])
            data["members_added"], data["members_removed"] = sorted(after - before), sorted(before - after)
        if operation == "deleted":
            data["members"] = plain(obj.user_set.all())
        return data


_reregister(User, UserAdmin)
_reregister(Group, GroupAdmin)


class DeviceAdmin(PersonAudit, ReadOnlyAdmin):
    """Second factors: listed, removable (audited, behind a fresh step-up), never added or edited here."""

    step_up_for_changes = True
    list_display = ("user", "name", "confirmed")
    search_fields = ("user__username", "name")

    def has_delete_permission(self, request, obj=None):
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def delete_model(self, request, obj):
        with transaction.atomic():
            data = {"model": f"{obj._meta.app_label}.{obj._meta.model_name}", "object": str(obj)}
            self.audit_person(
                request,
                obj.user,
                {**data, "operation": "deleted", "fields": [], "changes": {}, "device": obj.persistent_id},
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)


for _device in (TOTPDevice, StaticDevice):
    _reregister(_device, DeviceAdmin)


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ("prefix", "user", "name", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "user__username", "name")
    actions = ("revoke",)

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        for token in queryset.filter(revoked_at__isnull=True):
            token_revoke(
                token_id=token.pk, owner=token.user, actor=request.user, via=Channel.PORTAL, ip=client_ip(request)
            )
        messages.success(request, "Tokens revoked.")


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(ReadOnlyAdmin):
    """Who is linked to the identity provider, by which subject: written by sign-in and SCIM only."""

    list_display = ("user", "subject", "external_id", "provisioned_by_scim", "last_sign_in_at", "deleted_at")
    list_filter = ("provisioned_by_scim", "deleted_at")
    search_fields = ("user__username", "subject", "external_id")
