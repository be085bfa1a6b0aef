"""/api/v1/: the REST API (docs/design.md, "REST API v1"), its OpenAPI schema and its docs page."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from accounts.api import TokenViewSet
from approvals.api import GrantExtendView, RecertificationViewSet, RequestViewSet, UnusedEligibilityList
from broker.api import views as api
from broker.api.inputs import ID_PATTERN
from broker.api.policy import PolicyApply, PolicyPlan
from broker.error_views import api_not_found
from grants.api import GrantViewSet, ReconciliationList, ReconciliationRun

router = SimpleRouter()
router.register("requests", RequestViewSet, basename="request")
router.register("grants", GrantViewSet, basename="grant")
router.register("tokens", TokenViewSet, basename="token")
router.register("eligibility/reviews", RecertificationViewSet, basename="review")

v1 = [
    path("roles/", api.RoleList.as_view(), name="role-list"),
    path("check/", api.CheckView.as_view(), name="check"),
    path("audit/", api.AuditList.as_view(), name="audit-list"),
    path("audit/export/", api.AuditExport.as_view(), name="audit-export"),
    path("signals/", api.SignalView.as_view(), name="signals"),
    path("policy/plan/", PolicyPlan.as_view(), name="policy-plan"),
    path("policy/apply/", PolicyApply.as_view(), name="policy-apply"),
    path("eligibility/unused/", UnusedEligibilityList.as_view(), name="eligibility-unused"),
    path("reconciliation/", ReconciliationList.as_view(), name="reconciliation-list"),
    path("reconciliation/run/", ReconciliationRun.as_view(), name="reconciliation-run"),
    # An extension is a request (approvals), answered under the grant it extends.
    re_path(rf"^grants/(?P<pk>{ID_PATTERN})/extend/$", GrantExtendView.as_view(), name="grant-extend"),
    *router.urls,
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]

urlpatterns = [
    path("v1/", include(v1)),
    # Anything else under /api/ is a JSON 404, never an HTML page or a redirect to add a slash.
    re_path(r"^.*$", api_not_found),
]
