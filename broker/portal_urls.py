"""The web portal's pages. Paths of requests, grants, the inbox and home are fixed (broker/links.py)."""

from django.urls import path

from approvals import views as requests
from broker import audit_views, portal_views
from grants import views as grants

urlpatterns = [
    path("", portal_views.home, name="portal-home"),
    # Requests
    path("roles/<slug:slug>/request/", requests.request_new, name="request-new"),
    path("requests/", requests.request_list, name="request-list"),
    path("requests/<int:pk>/", requests.request_detail, name="request-detail"),
    path("requests/<int:pk>/cancel/", requests.request_cancel, name="request-cancel"),
    path("requests/<int:pk>/decide/", requests.request_decide, name="request-decide"),
    # Approver
    path("approvals/", requests.inbox, name="approvals-inbox"),
    path("approvals/decided/", requests.decided, name="approvals-decided"),
    # Grants
    path("grants/", grants.grant_list, name="grant-list"),
    path("grants/<int:pk>/", grants.grant_detail, name="grant-detail"),
    path("grants/<int:pk>/relinquish/", grants.grant_relinquish, name="grant-relinquish"),
    path("grants/<int:pk>/extend/", grants.grant_extend, name="grant-extend"),
    path("grants/<int:pk>/revoke/", grants.grant_revoke, name="grant-revoke"),
    path("grants/<int:pk>/review/", grants.grant_review, name="grant-review"),
    # Auditors and administrators
    path("audit/", audit_views.audit_log, name="audit-log"),
    path("audit/export/", audit_views.audit_export, name="audit-export"),
    path("review/", audit_views.review, name="elevation-review"),
    # My account
    path("account/", portal_views.account, name="portal-account"),
    path("account/tokens/", portal_views.tokens, name="portal-tokens"),
    path("account/tokens/<int:pk>/revoke/", portal_views.token_revoke_view, name="portal-token-revoke"),
]
