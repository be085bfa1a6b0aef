"""Membership of a Django group: the connector for access that Django itself enforces."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, Group

from grants.connectors.base import AccessEvent, Connector, ConnectorError, Problem, check_keys


class DjangoGroupConnector(Connector):
    name = "django_group"

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

    def holders(self) -> set[str]:
        group = Group.objects.filter(name=self.group_name).first()
        if group is None:
            return set()
        return set(group.user_set.values_list("username", flat=True))
