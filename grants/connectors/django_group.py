"""Membership of a Django group: the connector for access that Django itself enforces."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, Group

from grants.connectors.base import Connector, ConnectorError


class DjangoGroupConnector(Connector):
    name = "django_group"

    @classmethod
    def validate_config(cls, config: Any) -> list[str]:
        if not isinstance(config, dict):
            return ["config must be a mapping with a `group` key"]
        errors = []
        group = config.get("group")
        if not isinstance(group, str) or not group.strip():
            errors.append("config.group: the name of the Django group to manage is required")
        elif len(group) > 150:
            errors.append("config.group: at most 150 characters")
        unknown = set(config) - {"group"}
        if unknown:
            errors.append(f"config: unknown key(s) {', '.join(sorted(unknown))}")
        return errors

    @property
    def group_name(self) -> str:
        return self.config["group"]

    def _group(self) -> Group:
        group, _ = Group.objects.get_or_create(name=self.group_name)
        return group

    def prepare(self) -> None:
        self._group()

    def grant(self, user: AbstractBaseUser) -> None:
        if not user.is_active:
            raise ConnectorError(f"user {user.get_username()} is inactive")
        user.groups.add(self._group())

    def revoke(self, user: AbstractBaseUser) -> None:
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
