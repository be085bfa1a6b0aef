"""The portal's home page: my grants with the time left, my pending requests, the roles I may request.

Part of the shell: it reads from approvals and grants, which nothing else in broker/portal may do.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from approvals import selectors as request_selectors
from broker.catalog import eligible_roles
from grants import selectors as grant_selectors


@login_required
@require_GET
def home(request):
    """My grants with the time left, my pending requests, and the roles I may request."""
    user = request.user
    grants = list(grant_selectors.grants_live_for(user).select_related("role")[:50])
    pending = list(
        request_selectors.requests_of(user).filter(status="pending").select_related("role").order_by("created_at")[:50]
    )
    held = {g.role_id for g in grants}
    asked = {r.role_id for r in pending}
    roles = list(eligible_roles(user).order_by("break_glass", "name"))
    for role in roles:
        # A role with resources may still be asked for on another resource.
        role.held = role.pk in held and not role.has_resources
        role.asked = role.pk in asked and not role.has_resources
    return render(request, "portal/home.html", {"grants": grants, "pending": pending, "roles": roles})
