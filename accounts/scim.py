"""SCIM 2.0 provisioning (RFC 7643, 7644) at /scim/v2/: the IdP pushes joiners, movers and leavers.

scim2-models (pydantic) reads, checks and writes every SCIM message: resources, PATCH operations
(applied to the resource as it is here, filtered paths such as ``members[value eq "7"]`` included),
filters, list responses and errors. This module only maps them onto accounts and groups, through
the same functions OIDC sign-in uses (accounts/identity.py), so every change goes through the
broker's one path:

- ``active: false`` (PUT or PATCH) or DELETE of a User: the account is deactivated, its sessions
  end, its API tokens are revoked; its pending requests are cancelled and its live grants end
  through the reaction to the deactivation (approvals.signals), within seconds. A deleted user is
  kept (requests and grants hold on to their people), deactivated, and gone from SCIM.
- Group membership (POST, PUT, PATCH of a Group): ``group.user_set.add/remove``, so someone removed
  from an eligibility group loses what it gave at once.

Limits, on purpose: SCIM sees only people the IdP owns (provisioned by SCIM, or signed in through
OIDC), never local accounts such as the break-glass administrator; only the groups the broker
manages (IDP_MANAGED_GROUP_PREFIX, IDP_MANAGED_GROUPS); a managed group is never deleted (the policy
names it), DELETE empties it. Filters: ``eq`` on userName, externalId, id, emails.value and
displayName, joined by ``and``/``or``.

Authentication: ``Authorization: Bearer <SCIM_TOKEN>``, compared in constant time; wrong tokens are
counted per client address (API_AUTH_FAILURE_LIMIT per API_RATE_WINDOW, then 429 for wrong ones; the
right token is never locked out). Every answer is
``application/scim+json``; malformed input is a SCIM error (400, 404, 409, 413, 415), never a 500.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from pydantic import ValidationError
from scim2_models import (
    Context,
    Email,
    Error,
    GroupMember,
    GroupMembership,
    ListResponse,
    Meta,
    Name,
    PatchOp,
    ResourceType,
    SCIMException,
    ScimFilter,
    ServiceProviderConfig,
)
from scim2_models import (
    Group as ScimGroup,
)
from scim2_models import (
    User as ScimUser,
)
from scim2_models.path.expressions import Comparison, LogicalExpr

from accounts import identity, ratelimit
from broker.errors import BrokerError
from broker.http import client_ip
from broker.models import Channel

log = logging.getLogger(__name__)

User = get_user_model()
CONTENT_TYPE = "application/scim+json"
MAX_BODY = 64 * 1024
MAX_COUNT = 200


class ScimError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type


def _json(data: dict, status: int = 200, headers: dict | None = None) -> HttpResponse:
    response = HttpResponse(json.dumps(data), status=status, content_type=CONTENT_TYPE)
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def _error(status: int, detail: str, scim_type: str | None = None) -> HttpResponse:
    body = Error(status=status, scim_type=scim_type, detail=detail).model_dump()
    headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if status == 401 else None
    return _json(body, status, headers)


def _authenticated(request: HttpRequest) -> bool:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return hmac.compare_digest(token.strip().encode(), settings.SCIM_TOKEN.encode())


def _body(request: HttpRequest) -> dict:
    content_type = request.content_type or ""
    if content_type not in {CONTENT_TYPE, "application/json"}:
        raise ScimError(415, "send application/scim+json", "invalidSyntax")
    if len(request.body) > MAX_BODY:
        raise ScimError(413, f"the body is over {MAX_BODY // 1024} KiB", "tooLarge")
    try:
        data = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ScimError(400, "the body is not JSON", "invalidSyntax") from None
    if not isinstance(data, dict):
        raise ScimError(400, "the body must be a JSON object", "invalidSyntax")
    return data


def _validation_detail(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid value"


def scim_endpoint(view: Callable) -> Callable:
    """SCIM switched on, the bearer token, and every failure as a SCIM error."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not settings.SCIM_TOKEN:
            return _error(404, "SCIM is not switched on (SCIM_TOKEN)")
        if not _authenticated(request):
            # The right token always gets in (it is checked first, in constant time), so nobody can
            # lock the IdP out by sending wrong ones from its address; wrong ones are counted.
            ip = client_ip(request) or "unknown"
            limit, window = settings.API_AUTH_FAILURE_LIMIT, settings.API_RATE_WINDOW.total_seconds()
            wait = ratelimit.fail("scim-auth", ip, limit=limit, window=window)
            log.warning("SCIM call with a wrong or missing bearer token from %s", ip)
            if wait is not None:
                response = _error(429, f"too many failed tokens; try again in {wait} s", "tooMany")
                response["Retry-After"] = str(wait)
                return response
            return _error(401, "a valid bearer token is required")
        try:
            return view(request, *args, **kwargs)
        except ScimError as exc:
            return _error(exc.status, exc.detail, exc.scim_type)
        except SCIMException as exc:
            error = exc.to_error()
            return _error(int(error.status or 400), error.detail or str(exc), error.scim_type)
        except ValidationError as exc:
            return _error(400, _validation_detail(exc), "invalidValue")
        except BrokerError as exc:
            status = exc.status if exc.status < 500 else 400
            scim_type = {409: "uniqueness", 403: "mutability", 404: None}.get(status, "invalidValue")
            return _error(status, exc.detail, scim_type)
        except IntegrityError:
            return _error(409, "this would duplicate an existing resource", "uniqueness")

    return wrapper


def _methods(**handlers: Callable) -> Callable:
    def dispatch(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        handler = handlers.get(request.method.lower())
        if handler is None:
            response = _error(405, f"{request.method} is not supported here")
            response["Allow"] = ", ".join(m.upper() for m in handlers)
            return response
        return handler(request, *args, **kwargs)

    return scim_endpoint(dispatch)


def _base(request: HttpRequest) -> str:
    return settings.SITE_URL + "/scim/v2"


# --- Users ----------------------------------------------------------------------------------------


def scim_users() -> QuerySet:
    """People the IdP owns and has not deleted: the only ones SCIM may see or change."""
    return User.objects.filter(
        external_identity__isnull=False, external_identity__deleted_at__isnull=True
    ).select_related("external_identity")


def _user_or_404(pk: str) -> AbstractBaseUser:
    if not pk.isdigit() or len(pk) > 18:
        raise ScimError(404, f"no user {pk!r}")
    user = scim_users().filter(pk=int(pk)).first()
    if user is None:
        raise ScimError(404, f"no user {pk!r}")
    return user


def user_resource(user: AbstractBaseUser, base: str, targets: set[str] | None = None) -> ScimUser:
    ident = user.external_identity
    groups = [g for g in user.groups.all() if identity.is_managed(g.name, targets=targets)]
    return ScimUser(
        id=str(user.pk),
        external_id=ident.external_id,
        user_name=user.get_username(),
        name=Name(given_name=user.first_name or None, family_name=user.last_name or None)
        if (user.first_name or user.last_name)
        else None,
        display_name=user.get_full_name() or None,
        active=user.is_active,
        emails=[Email(value=user.email, primary=True)] if user.email else None,
        groups=[GroupMembership(value=str(g.pk), display=g.name) for g in groups] or None,
        meta=Meta(resource_type="User", created=user.date_joined, location=f"{base}/Users/{user.pk}"),
    )


def _email_of(resource: ScimUser) -> str | None:
    emails = [e for e in (resource.emails or []) if e.value]
    chosen = next((e for e in emails if e.primary), emails[0] if emails else None)
    return str(chosen.value) if chosen else ""


def _apply_user(resource: ScimUser, *, user: AbstractBaseUser | None, ip: str | None) -> tuple[AbstractBaseUser, bool]:
    """Create or update an account from a full User resource. Returns (user, created)."""
    username = identity.clean_username(resource.user_name)
    name = resource.name
    user, created = identity.scim_user_save(
        user=user,
        username=username,
        external_id=resource.external_id,
        email=_email_of(resource),
        first_name=(name.given_name if name else None) or "",
        last_name=(name.family_name if name else None) or "",
        ip=ip,
    )
    if resource.active is False:
        identity.user_deactivate(user=user, via=Channel.SCIM, reason="SCIM: active is false", ip=ip)
    elif resource.active is True or created:
        identity.user_reactivate(user=user, via=Channel.SCIM, ip=ip)
    user.refresh_from_db()
    return user, created


def users(request: HttpRequest) -> HttpResponse:
    base = _base(request)
    if request.method == "POST":
        resource = ScimUser.model_validate(_body(request), scim_ctx=Context.RESOURCE_CREATION_REQUEST)
        if resource.active is None:
            resource.active = True  # RFC 7643: a new user is active unless the provider says otherwise
        user, _ = _apply_user(resource, user=None, ip=client_ip(request))
        out = user_resource(user, base).model_dump(scim_ctx=Context.RESOURCE_CREATION_RESPONSE)
        return _json(out, 201, {"Location": f"{base}/Users/{user.pk}"})
    queryset = scim_users().filter(_filter(request, ScimUser, _USER_FIELDS)).order_by("pk")
    targets = identity.connector_target_groups()
    return _list(request, queryset, lambda u: user_resource(u, base, targets))


def user_detail(request: HttpRequest, pk: str) -> HttpResponse:
    base = _base(request)
    user = _user_or_404(pk)
    ip = client_ip(request)
    if request.method == "DELETE":
        identity.scim_user_delete(user=user, ip=ip)
        return HttpResponse(status=204)
    if request.method == "PUT":
        resource = ScimUser.model_validate(_body(request), scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
        user, _ = _apply_user(resource, user=user, ip=ip)
    elif request.method == "PATCH":
        patch = PatchOp[ScimUser].model_validate(_body(request), scim_ctx=Context.RESOURCE_PATCH_REQUEST)
        resource = user_resource(user, base)
        if patch.patch(resource):
            user, _ = _apply_user(resource, user=user, ip=ip)
    return _json(user_resource(user, base).model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


# --- Groups ---------------------------------------------------------------------------------------


def _scim_members(group: Group) -> list[AbstractBaseUser]:
    return list(scim_users().filter(groups=group).order_by("pk"))


def group_resource(group: Group, base: str) -> ScimGroup:
    return ScimGroup(
        id=str(group.pk),
        display_name=group.name,
        members=[GroupMember(value=str(u.pk), display=u.get_username(), type="User") for u in _scim_members(group)]
        or None,
        meta=Meta(resource_type="Group", location=f"{base}/Groups/{group.pk}"),
    )


def _group_or_404(pk: str) -> Group:
    if not pk.isdigit() or len(pk) > 18:
        raise ScimError(404, f"no group {pk!r}")
    group = identity.managed_groups().filter(pk=int(pk)).first()
    if group is None:
        raise ScimError(404, f"no group {pk!r}")
    return group


def _members_of(resource: ScimGroup) -> list[AbstractBaseUser]:
    ids = [m.value for m in resource.members or [] if m.value is not None]
    bad = [i for i in ids if not str(i).isdigit() or len(str(i)) > 18]
    found = {str(u.pk): u for u in scim_users().filter(pk__in=[int(i) for i in ids if i not in bad])}
    missing = bad + [i for i in ids if i not in bad and str(i) not in found]
    if missing:
        raise ScimError(400, f"no such user(s): {', '.join(map(str, missing[:10]))}", "invalidValue")
    return list(found.values())


def _managed_name(display_name: str | None) -> str:
    if not display_name or not display_name.strip():
        raise ScimError(400, "displayName is required", "invalidValue")
    name = identity.group_name_for(display_name.strip())
    if name is None or len(name) > 150:
        raise ScimError(
            403,
            f"the broker does not manage the group {display_name!r} "
            "(IDP_MANAGED_GROUP_PREFIX, IDP_MANAGED_GROUPS; never a role's target group)",
            "mutability",
        )
    return name


def _apply_group(resource: ScimGroup, *, group: Group, ip: str | None) -> None:
    """Make a managed group's SCIM-visible members exactly the resource's; a rename stays within managed names."""
    wanted = {u.pk: u for u in _members_of(resource)}
    name = _managed_name(resource.display_name)
    with transaction.atomic():
        if name != group.name:
            identity.group_rename(group=group, name=name, via=Channel.SCIM, ip=ip)
        current = {u.pk: u for u in _scim_members(group)}
        identity.group_members_change(
            group=group,
            add=[u for pk, u in wanted.items() if pk not in current],
            remove=[u for pk, u in current.items() if pk not in wanted],
            via=Channel.SCIM,
            ip=ip,
        )


def groups(request: HttpRequest) -> HttpResponse:
    base = _base(request)
    if request.method == "POST":
        resource = ScimGroup.model_validate(_body(request), scim_ctx=Context.RESOURCE_CREATION_REQUEST)
        name = _managed_name(resource.display_name)
        members = _members_of(resource)
        with transaction.atomic():
            if Group.objects.filter(name=name).exists():
                raise ScimError(409, f"the group {name!r} exists; find it with a displayName filter", "uniqueness")
            group = identity.group_create(name=name, via=Channel.SCIM, ip=client_ip(request))
            identity.group_members_change(group=group, add=members, via=Channel.SCIM, ip=client_ip(request))
        out = group_resource(group, base).model_dump(scim_ctx=Context.RESOURCE_CREATION_RESPONSE)
        return _json(out, 201, {"Location": f"{base}/Groups/{group.pk}"})
    queryset = identity.managed_groups().filter(_filter(request, ScimGroup, _GROUP_FIELDS)).order_by("pk")
    return _list(request, queryset, lambda g: group_resource(g, base))


def group_detail(request: HttpRequest, pk: str) -> HttpResponse:
    base = _base(request)
    group = _group_or_404(pk)
    ip = client_ip(request)
    if request.method == "DELETE":
        # The group stays (the policy may name it); the IdP no longer puts anyone in it.
        identity.group_members_change(group=group, remove=_scim_members(group), via=Channel.SCIM, ip=ip)
        return HttpResponse(status=204)
    if request.method == "PUT":
        resource = ScimGroup.model_validate(_body(request), scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
        _apply_group(resource, group=group, ip=ip)
    elif request.method == "PATCH":
        patch = PatchOp[ScimGroup].model_validate(_body(request), scim_ctx=Context.RESOURCE_PATCH_REQUEST)
        resource = group_resource(group, base)
        if patch.patch(resource):
            _apply_group(resource, group=group, ip=ip)
    group.refresh_from_db()
    return _json(group_resource(group, base).model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


# --- Lists and filters ----------------------------------------------------------------------------

_USER_FIELDS = {
    ("username", None): "username",
    ("externalid", None): "external_identity__external_id",
    ("id", None): "pk",
    ("emails", "value"): "email",
    ("emails", None): "email",
    ("active", None): "is_active",
}
_GROUP_FIELDS = {("displayname", None): "name", ("id", None): "pk"}


def _filter(request: HttpRequest, model, fields: dict) -> Q:
    text = request.GET.get("filter")
    if not text:
        return Q()
    if len(text) > 1000:
        raise ScimError(400, "the filter is too long", "invalidFilter")
    try:
        tree = ScimFilter[model](text).ast
    except (SCIMException, ValueError) as exc:
        raise ScimError(400, f"invalid filter: {exc}", "invalidFilter") from None
    return _q(tree, fields)


def _q(node, fields: dict) -> Q:
    if isinstance(node, LogicalExpr):
        parts = [_q(term, fields) for term in node.terms]
        joined = parts[0]
        for part in parts[1:]:
            joined = (joined & part) if str(node.op) == "and" else (joined | part)
        return joined
    if isinstance(node, Comparison) and str(node.op) == "eq" and node.attr_path.uri in (None, ""):
        key = (node.attr_path.attr.lower(), node.attr_path.sub_attr.lower() if node.attr_path.sub_attr else None)
        field = fields.get(key)
        if field is not None:
            value = node.value
            if field == "pk":
                return Q(pk=int(value)) if str(value).isdigit() and len(str(value)) <= 18 else Q(pk__in=[])
            if field == "is_active":
                return Q(is_active=bool(value))
            if not isinstance(value, str):
                return Q(pk__in=[])
            return Q(**{f"{field}__iexact" if field in {"username", "email", "name"} else field: value})
    raise ScimError(400, f"unsupported filter {node}; use eq on {_names(fields)}", "invalidFilter")


def _names(fields: dict) -> str:
    return ", ".join(sorted({f"{a}.{s}" if s else a for a, s in fields}))


def _int_param(request: HttpRequest, name: str, default: int, minimum: int) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise ScimError(400, f"{name} must be a whole number", "invalidValue")
    return max(int(raw), minimum)


def _list(request: HttpRequest, queryset: QuerySet, to_resource: Callable) -> HttpResponse:
    start = _int_param(request, "startIndex", 1, 1)
    count = min(_int_param(request, "count", 100, 0), MAX_COUNT)
    total = queryset.count()
    page = list(queryset[start - 1 : start - 1 + count]) if count else []
    body = ListResponse[ScimUser | ScimGroup](
        total_results=total, start_index=start, items_per_page=len(page), resources=[to_resource(o) for o in page]
    ).model_dump(scim_ctx=Context.SEARCH_RESPONSE)
    return _json(body)


# --- Discovery ------------------------------------------------------------------------------------


def service_provider_config(request: HttpRequest) -> HttpResponse:
    config = ServiceProviderConfig.model_validate(
        {
            "patch": {"supported": True},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": True, "maxResults": MAX_COUNT},
            "changePassword": {"supported": False},
            "sort": {"supported": False},
            "etag": {"supported": False},
            "authenticationSchemes": [
                {"type": "oauthbearertoken", "name": "Bearer token", "description": "SCIM_TOKEN", "primary": True}
            ],
        }
    )
    return _json(config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


def resource_types(request: HttpRequest) -> HttpResponse:
    base = _base(request)
    types = [
        ResourceType(id="User", name="User", endpoint="/Users", schema_="urn:ietf:params:scim:schemas:core:2.0:User",
                     meta=Meta(resource_type="ResourceType", location=f"{base}/ResourceTypes/User")),
        ResourceType(id="Group", name="Group", endpoint="/Groups", schema_="urn:ietf:params:scim:schemas:core:2.0:Group",
                     meta=Meta(resource_type="ResourceType", location=f"{base}/ResourceTypes/Group")),
    ]  # fmt: skip
    body = ListResponse[ResourceType](
        total_results=len(types), start_index=1, items_per_page=len(types), resources=types
    ).model_dump(scim_ctx=Context.SEARCH_RESPONSE)
    return _json(body)


def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    return _error(404, f"no SCIM endpoint {request.path!r}")


urlpatterns = [
    path("Users", _methods(get=users, post=users)),
    path("Users/<str:pk>", _methods(get=user_detail, put=user_detail, patch=user_detail, delete=user_detail)),
    path("Groups", _methods(get=groups, post=groups)),
    path("Groups/<str:pk>", _methods(get=group_detail, put=group_detail, patch=group_detail, delete=group_detail)),
    path("ServiceProviderConfig", _methods(get=service_provider_config)),
    path("ResourceTypes", _methods(get=resource_types)),
    path("<path:rest>", scim_endpoint(not_found)),
]
