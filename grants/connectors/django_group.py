"""Membership of a Django group: the connector for access that Django itself enforces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group

from grants.connectors.base import AccessEvent, Connector, ConnectorError, Problem, check_keys


class DjangoGroupConnector(Connector):
    name = "django_group"
    local = True

    @classmethod
    def validate_config(cls, config: Any) -> list[str | Problem]:
        if not isinstance(config, dict):
            return ["must be a mapping with a `group` key"]
        errors: list[str | Problem] = []
        group = config.get("group")
        if not isinstance(group, str) or not group.strip():
            errors.append((("group",), "the name of the Django group to manage is required"))
        elif len(group) > 150:
            errors.append((("group",), "at most 150 characters"))
        errors += [p for p in check_keys(config, required=set(), optional={"group"}) if p[0]]
        return errors

    def describe(self) -> str:
        return f"Django group {self.group_name!r}"

    @property
    def group_name(self) -> str:
        return self.config["group"]

    def _group(self) -> Group:
        group, _ = Group.objects.get_or_create(name=self.group_name)
        return group

    def prepare(self) -> None:
        self._group()

    def grant(self, user: AbstractBaseUser, event: AccessEvent | None = None) -> None:
        if not user.is_active:
            raise ConnectorError(f"user {user.get_username()} is inactive")
        user.groups.add(self._group())

    def revoke(self, user: AbstractBaseUser, event: AccessEvent | None = None) -> None:
        group = Group.objects.filter(name=self.group_name).first()
        if group is not None:
            user.groups.remove(group)

    def is_granted(self, user: AbstractBaseUser) -> bool:
        return user.groups.filter(name=self.group_name).exists()

    # One statement for the whole batch: the removal and the read-back of a burst of grants.

    def revoke_many(self, items: Sequence[tuple[AbstractBaseUser, AccessEvent]]) -> list[Exception | None]:
        if self.overrides(DjangoGroupConnector, "revoke"):
            return super().revoke_many(items)
        group = Group.objects.filter(name=self.group_name).first()
        if group is not None:
            # One DELETE for all of them, with the same m2m signals as one removal each.
            group.user_set.remove(*[user.pk for user, _ in items])
        return [None] * len(items)

    def is_granted_many(self, users: Sequence[AbstractBaseUser]) -> dict[Any, bool | None]:
        if self.overrides(DjangoGroupConnector, "is_granted"):
            return super().is_granted_many(users)
        members = set(
            get_user_model()
            .groups.through.objects.filter(group__name=self.group_name, user_id__in=[u.pk for u in users])
            .values_list("user_id", flat=True)
        )
        return {user.pk: user.pk in members for user in users}

    def holders(self) -> set[str]:
        group = Group.objects.filter(name=self.group_name).first()
        if group is None:
            return set()
        return set(group.user_set.values_list("username", flat=True))
