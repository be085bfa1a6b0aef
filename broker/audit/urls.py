"""The audit log pages for auditors and administrators: the trail with its chain status, and exports."""

from django.urls import path

from broker.audit import views

urlpatterns = [
    path("audit/", views.audit_log, name="audit-log"),
    path("audit/export/", views.audit_export, name="audit-export"),
]
