"""A resource-scoped postgres_role against the machine's PostgreSQL: one role per database, two real databases."""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection

from approvals import services as approvals
from broker.models import Channel
from grants import services
from grants.models import Grant
from grants.selectors import grant_check
from tests.factories import EligibilityFactory, RoleFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def databases(pg_target):
    """Two throwaway databases, each reachable only through its own role <database>_rw."""
    names = [f"{pg_target.prefix}_orders", f"{pg_target.prefix}_billing"]
    for name in names:
        pg_target.execute("CREATE DATABASE {}", name)
        pg_target.execute("REVOKE CONNECT ON DATABASE {} FROM PUBLIC", name)
        pg_target.execute("CREATE ROLE {} NOLOGIN", f"{name}_rw")
        pg_target.execute("GRANT CONNECT ON DATABASE {} TO {}", name, f"{name}_rw")
    yield names
    for name in names:
        pg_target.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", params=[name])
        pg_target.execute("DROP DATABASE IF EXISTS {}", name)


@pytest.fixture
def alice(pg_target):
    user = UserFactory(username="alice")
    pg_target.create_login(f"{pg_target.prefix}_alice")
    return user


@pytest.fixture
def db_access(pg_target, databases, alice):
    role = RoleFactory(
        slug="db-access",
        auto_approve=True,
        resources={"names": databases},
        connector="postgres_role",
        connector_config={
            "dsn_env": "TARGET_PG_DSN",
            "role": "{resource}_rw",
            "login": f"{pg_target.prefix}_{{username}}",
        },
    )
    EligibilityFactory(role=role, user=alice)
    return role


def hold(user, role, resource) -> Grant:
    grant = approvals.request_create(
        requester=user, role=role, resource=resource, duration=timedelta(minutes=5), justification="x", via=Channel.API
    ).grant
    return services.grant_activate(grant_id=grant.pk)


def can_connect(pg_target, database: str) -> bool:
    db = connection.settings_dict
    try:
        with psycopg.connect(
            host=db["HOST"] or "localhost",
            port=db["PORT"] or 5432,
            dbname=database,
            user=f"{pg_target.prefix}_alice",
            autocommit=True,
        ) as conn:
            return conn.execute("SELECT current_database()").fetchone()[0] == database
    except psycopg.OperationalError:
        return False


def test_a_grant_on_one_database_opens_that_database_only(pg_target, databases, alice, db_access):
    orders, billing = databases
    assert hold(alice, db_access, orders).status == "active"
    assert can_connect(pg_target, orders)
    assert not can_connect(pg_target, billing)


def test_the_role_held_on_both_databases_at_once_loses_only_the_one_given_back(pg_target, databases, alice, db_access):
    orders, billing = databases
    first = hold(alice, db_access, orders)
    hold(alice, db_access, billing)
    assert can_connect(pg_target, orders) and can_connect(pg_target, billing)

    services.grant_relinquish(grant_id=first.pk, user=alice, via=Channel.API)
    assert not pg_target.is_member(f"{pg_target.prefix}_alice", f"{orders}_rw")
    assert not can_connect(pg_target, orders)
    assert can_connect(pg_target, billing)


def test_the_check_answers_per_database(pg_target, databases, alice, db_access):
    orders, billing = databases
    hold(alice, db_access, orders)
    assert grant_check(viewer=alice, username="alice", role_slug="db-access", resource=orders).allowed
    assert not grant_check(viewer=alice, username="alice", role_slug="db-access", resource=billing).allowed
