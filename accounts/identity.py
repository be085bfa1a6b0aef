"""People and groups from the company's identity provider: one set of changes for OIDC sign-in and SCIM.

Both channels only call these functions, so a person the IdP removes from a group, or a leaver,
goes through the same path whichever channel brings the news:

- a group left: ``user.groups.remove`` / ``group.user_set.remove``, which ``approvals.signals`` watch:
  the reaction to lost eligibility (pending requests cancelled, live grants ended as
  ``eligibility_lost``) is queued when the change commits, and runs within seconds;
- a leaver: the account is deactivated (the same signal; the effective rule refuses an inactive
  holder from that instant), every session ends (``accounts.sessions``: the per-person epoch) and
  every API token is revoked.

The broker only ever touches the groups it manages (``is_managed``): names starting with
IDP_MANAGED_GROUP_PREFIX and those listed in IDP_MANAGED_GROUPS, never the target group of a
``django_group`` role (the broker itself adds and removes people there, for grants). Each change is
audited in the transaction that makes it, with the channel it came from (``oidc`` or ``scim``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.events import record_auth_event
from accounts.models import ApiToken, ExternalIdentity
from accounts.sessions import sessions_end
from accounts.tokens import token_revoke
from broker import audit
from broker.errors import Conflict, Invalid, NotAllowed
from broker.models import Channel, Role

log = logging.getLogger(__name__)

User = get_user_model()
_username_validator = UnicodeUsernameValidator()


# --- Which groups the IdP decides ------------------------------------------------------------------


def _explicit() -> dict[str, str]:
    """IDP_MANAGED_GROUPS as {value the IdP sends: group name}; a plain name maps onto itself."""
    mapping = {}
    for entry in settings.IDP_MANAGED_GROUPS:
        value, sep, name = entry.rpartition("=")
        mapping[(value if sep else name).strip()] = name.strip()
    return mapping


def connector_target_groups() -> set[str]:
    """Groups the broker grants and revokes itself (django_group roles, retired ones too): never the IdP's."""
    configs = Role.objects.filter(connector="django_group").values_list("connector_config", flat=True)
    return {c["group"] for c in configs if isinstance(c, dict) and isinstance(c.get("group"), str)}


def is_managed(name: str, *, targets: set[str] | None = None) -> bool:
    prefix = settings.IDP_MANAGED_GROUP_PREFIX
    named = name in _explicit().values() or bool(prefix and name.startswith(prefix))
    return named and name not in (connector_target_groups() if targets is None else targets)


def group_name_for(value: str, *, targets: set[str] | None = None) -> str | None:
    """The broker group an IdP group value (a name, or an id mapped in IDP_MANAGED_GROUPS) stands for,
    or None when the broker does not manage it."""
    name = _explicit().get(value, value)
    return name if is_managed(name, targets=targets) else None


def managed_groups(targets: set[str] | None = None):
    """The existing groups the IdP decides, as a queryset."""
    targets = connector_target_groups() if targets is None else targets
    names = [g for g in Group.objects.values_list("name", flat=True) if is_managed(g, targets=targets)]
    return Group.objects.filter(name__in=names)


# --- People --------------------------------------------------------------------------------------


def clean_username(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("the identity provider sent no username", fields={"userName": ["Required."]})
    value = value.strip()
    if len(value) > 150:
        raise Invalid("the username is too long", fields={"userName": ["At most 150 characters."]})
    try:
        _username_validator(value)
    except ValidationError:
        raise Invalid(
            f"{value!r} is not a valid username", fields={"userName": ["Letters, digits and @/./+/-/_ only."]}
        ) from None
    return value


def _profile(user: AbstractBaseUser, *, email: str | None, first_name: str | None, last_name: str | None) -> list[str]:
    changed = []
    for field, value in (("email", email), ("first_name", first_name), ("last_name", last_name)):
        if value is None:
            continue
        value = str(value)[: User._meta.get_field(field).max_length]
        if getattr(user, field) != value:
            setattr(user, field, value)
            changed.append(field)
    return changed


def identity_for_sign_in(
    *,
    issuer: str,
    subject: str,
    username: str,
    email: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    ip: str | None = None,
    now: datetime | None = None,
) -> tuple[AbstractBaseUser, bool]:
    """The account of the person the IdP just signed in, created or updated from the claims.

    Found by (issuer, subject); else an account SCIM provisioned and not yet signed in (by
    ``externalId`` equal to the subject, then by username), which is linked now. A username taken by
    an account the IdP does not own (a local account, such as the break-glass administrator) is
    refused: a sign-in never takes over an existing local account. Inactive accounts are refused.
    Returns (user, created).
    """
    now = now or timezone.now()
    username = clean_username(username)
    with transaction.atomic():
        identity = (
            ExternalIdentity.objects.select_for_update().select_related("user").filter(issuer=issuer, subject=subject)
        ).first()
        if identity is None:
            identity = (
                ExternalIdentity.objects.select_for_update()
                .select_related("user")
                .filter(subject__isnull=True, provisioned_by_scim=True, deleted_at__isnull=True)
                .filter(external_id=subject)
                .first()
            ) or (
                ExternalIdentity.objects.select_for_update()
                .select_related("user")
                .filter(subject__isnull=True, provisioned_by_scim=True, deleted_at__isnull=True)
                .filter(user__username=username)
                .first()
            )
            if identity is not None:
                identity.issuer, identity.subject = issuer, subject
        created = False
        if identity is None and not settings.OIDC_CREATE_USERS:
            raise NotAllowed(
                f"{username!r} has no account here: the identity provider provisions accounts (SCIM) before sign-in",
                code="not_provisioned",
            )
        if identity is None:
            if User.objects.filter(username=username).exists():
                raise Conflict(
                    f"an account named {username!r} exists that the identity provider does not own; "
                    "an administrator must link or rename it",
                    code="username_taken",
                )
            user = User(username=username, is_active=True)
            user.set_unusable_password()
            _profile(user, email=email, first_name=first_name, last_name=last_name)
            user.save()
            identity = ExternalIdentity(user=user, issuer=issuer, subject=subject)
            created = True
            record_auth_event(
                "user.created",
                user=user,
                actor=None,
                via=Channel.OIDC,
                ip=ip,
                data={"issuer": issuer, "subject": subject},
            )
        user = User.objects.select_for_update().get(pk=identity.user_id)
        if not user.is_active:
            raise NotAllowed(f"the account {user.get_username()!r} is deactivated", code="account_inactive")
        changed = [] if created else _profile(user, email=email, first_name=first_name, last_name=last_name)
        if not created and user.get_username() != username:
            if User.objects.filter(username=username).exclude(pk=user.pk).exists():
                log.warning("identity provider renamed %s to %s, which is taken: kept", user.get_username(), username)
            else:
                record_auth_event(
                    "user.renamed", user=user, actor=None, via=Channel.OIDC, ip=ip,
                    data={"from": user.get_username(), "to": username},
                )  # fmt: skip
                user.username = username
                changed.append("username")
        if changed:
            user.save(update_fields=changed)
        identity.last_sign_in_at = now
        identity.save()
        return user, created


def memberships_set(
    *,
    user: AbstractBaseUser,
    names: Iterable[str],
    via: str,
    ip: str | None = None,
    actor: AbstractBaseUser | None = None,
) -> tuple[list[str], list[str]]:
    """Make the person's managed groups exactly ``names`` (unmanaged names are ignored); other groups
    are left alone. Leaving a group goes through ``user.groups.remove``, so the reaction to lost
    eligibility is queued on commit. Returns (added, removed)."""
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # one change of this person's groups at a time
        targets = connector_target_groups()
        current = {g.name: g for g in user.groups.all() if is_managed(g.name, targets=targets)}
        wanted = {n for n in names if is_managed(n, targets=targets)}
        added = sorted(wanted - current.keys())
        removed = sorted(current.keys() - wanted)
        if added:
            user.groups.add(*[Group.objects.get_or_create(name=n)[0] for n in added])
        if removed:
            user.groups.remove(*[current[n] for n in removed])
        if added or removed:
            record_auth_event(
                "user.groups_changed", user=user, actor=actor, via=via, ip=ip, data={"added": added, "removed": removed}
            )
    return added, removed


def group_members_change(
    *,
    group: Group,
    add: Iterable[AbstractBaseUser] = (),
    remove: Iterable[AbstractBaseUser] = (),
    via: str,
    ip: str | None = None,
) -> tuple[list[str], list[str]]:
    """Add and remove members of a managed group (SCIM). Returns the usernames (added, removed)."""
    if not is_managed(group.name):
        raise NotAllowed(f"the broker does not manage the group {group.name!r}", code="group_not_managed")
    with transaction.atomic():
        Group.objects.select_for_update().filter(pk=group.pk).first()
        members = set(group.user_set.values_list("pk", flat=True))
        to_add = sorted({u.pk: u for u in add if u.pk not in members}.values(), key=lambda u: u.pk)
        to_remove = sorted({u.pk: u for u in remove if u.pk in members}.values(), key=lambda u: u.pk)
        if to_add:
            group.user_set.add(*to_add)
        if to_remove:
            group.user_set.remove(*to_remove)  # approvals.signals: the eligibility reaction, on commit
        added = [u.get_username() for u in to_add]
        removed = [u.get_username() for u in to_remove]
        if added or removed:
            audit.record(
                "group.members_changed",
                actor=None,
                target=("group", group.pk),
                via=via,
                ip=ip,
                subject=group.name,
                data={"group": group.name, "added": added, "removed": removed},
            )
    return added, removed


def user_deactivate(*, user: AbstractBaseUser, via: str, reason: str, ip: str | None = None) -> bool:
    """A leaver: deactivated, every session ended, every API token revoked, all audited; their
    pending requests and live grants end through the reaction to the deactivation (approvals.signals).
    Returns whether the account was active. Idempotent."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        was_active = user.is_active
        if was_active:
            user.is_active = False
            user.save(update_fields=["is_active"])  # approvals.signals queues the reaction on commit
            record_auth_event("user.deactivated", user=user, actor=None, via=via, ip=ip, data={"reason": reason})
            sessions_end(user=user, actor=None, reason=reason, via=via, ip=ip)
        for token_id in ApiToken.objects.filter(user=user, revoked_at__isnull=True).values_list("pk", flat=True):
            token_revoke(token_id=token_id, owner=user, via=via, ip=ip, by_system=True)
    return was_active


def user_reactivate(*, user: AbstractBaseUser, via: str, ip: str | None = None) -> bool:
    """The IdP says the person is active again. Grants and requests that ended stay ended."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        if user.is_active:
            return False
        user.is_active = True
        user.save(update_fields=["is_active"])
        record_auth_event("user.reactivated", user=user, actor=None, via=via, ip=ip, data={})
    return True


# --- SCIM: accounts and groups the IdP pushes --------------------------------------------------


def scim_user_save(
    *,
    user: AbstractBaseUser | None,
    username: str,
    external_id: str | None,
    email: str | None,
    first_name: str,
    last_name: str,
    ip: str | None = None,
) -> tuple[AbstractBaseUser, bool]:
    """Create (``user`` None) or replace an account the IdP owns. A username or externalId held by
    another account is a conflict; a local account is never taken over. Returns (user, created)."""
    username = clean_username(username)
    if external_id is not None and (not isinstance(external_id, str) or len(external_id) > 255):
        raise Invalid("externalId is too long", fields={"externalId": ["At most 255 characters."]})
    with transaction.atomic():
        clash = User.objects.filter(username=username)
        if user is not None:
            clash = clash.exclude(pk=user.pk)
        taken = clash.select_related("external_identity").first()
        created = False
        if user is None and taken is not None:
            ident = getattr(taken, "external_identity", None)
            if ident is None or ident.deleted_at is None:
                raise Conflict(f"the username {username!r} is taken", code="conflict")
            user = taken  # deleted by the IdP earlier, and provisioned again: the same account comes back
            ident.deleted_at = None
            ident.save(update_fields=["deleted_at"])
            record_auth_event("user.restored", user=user, actor=None, via=Channel.SCIM, ip=ip, data={})
        elif taken is not None:
            raise Conflict(f"the username {username!r} is taken", code="conflict")
        if (
            external_id
            and ExternalIdentity.objects.filter(external_id=external_id)
            .exclude(user_id=getattr(user, "pk", None))
            .exists()
        ):
            raise Conflict(f"the externalId {external_id!r} belongs to another user", code="conflict")
        if user is None:
            user = User(username=username, is_active=True)
            user.set_unusable_password()
            _profile(user, email=email or "", first_name=first_name, last_name=last_name)
            user.save()
            ExternalIdentity.objects.create(user=user, external_id=external_id or None, provisioned_by_scim=True)
            created = True
            record_auth_event(
                "user.created", user=user, actor=None, via=Channel.SCIM, ip=ip,
                data={"external_id": external_id, "email": user.email},
            )  # fmt: skip
            return user, created
        user = User.objects.select_for_update().get(pk=user.pk)
        changed = _profile(user, email=email or "", first_name=first_name, last_name=last_name)
        before = user.get_username()
        if before != username:
            user.username = username
            changed.append("username")
        if changed:
            user.save(update_fields=changed)
        ident = ExternalIdentity.objects.select_for_update().get(user=user)
        if (external_id or None) != ident.external_id:
            ident.external_id = external_id or None
            ident.save(update_fields=["external_id"])
            changed.append("external_id")
        if changed:
            record_auth_event(
                "user.updated", user=user, actor=None, via=Channel.SCIM, ip=ip,
                data={"fields": sorted(changed), **({"renamed_from": before} if before != username else {})},
            )  # fmt: skip
        return user, created


def scim_user_delete(*, user: AbstractBaseUser, ip: str | None = None) -> None:
    """DELETE from the IdP: a leaver (deactivated, sessions and tokens ended) whom SCIM no longer sees.
    The account stays: requests and grants keep their people."""
    with transaction.atomic():
        user_deactivate(user=user, via=Channel.SCIM, reason="SCIM: user deleted", ip=ip)
        ExternalIdentity.objects.filter(user=user).update(deleted_at=timezone.now())
        record_auth_event("user.deleted", user=user, actor=None, via=Channel.SCIM, ip=ip, data={})


def group_create(*, name: str, via: str, ip: str | None = None) -> Group:
    if not is_managed(name):
        raise NotAllowed(f"the broker does not manage the group {name!r}", code="group_not_managed")
    with transaction.atomic():
        group = Group.objects.create(name=name)
        audit.record(
            "group.created", actor=None, target=("group", group.pk), via=via, ip=ip, subject=name, data={"group": name}
        )
    return group


def group_rename(*, group: Group, name: str, via: str, ip: str | None = None) -> Group:
    """A managed group renamed at the IdP; the new name must be managed too, and free."""
    if not is_managed(group.name) or not is_managed(name):
        raise NotAllowed(f"the broker does not manage the group {name!r}", code="group_not_managed")
    with transaction.atomic():
        if Group.objects.filter(name=name).exclude(pk=group.pk).exists():
            raise Conflict(f"a group named {name!r} exists", code="conflict")
        before = group.name
        group.name = name
        group.save(update_fields=["name"])
        audit.record(
            "group.renamed", actor=None, target=("group", group.pk), via=via, ip=ip, subject=name,
            data={"from": before, "to": name},
        )  # fmt: skip
    return group
