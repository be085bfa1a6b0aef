"""A real worker against a webhook receiver: on-time removal, and one hanging target among healthy ones."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group

from approvals import services as approvals
from broker.models import Channel
from grants.models import Grant
from tests.factories import EligibilityFactory, RoleFactory, UserFactory
from tests.integration.conftest import wait_for
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver(monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", "integration-hook-secret")
    r = Receiver()
    yield r
    r.close()


def hook_role(receiver, slug="firewall"):
    return RoleFactory(
        slug=slug,
        auto_approve=True,
        connector="webhook",
        connector_config={"url": receiver.url, "secret_env": "HOOK_SECRET", "timeout": "1s"},
    )


def ask(user, role, seconds) -> Grant:
    EligibilityFactory(role=role, user=user)
    return approvals.request_create(
        requester=user, role=role, duration=timedelta(seconds=seconds), justification="x", via=Channel.API
    ).grant


def statuses(grants) -> list[str]:
    return list(Grant.objects.filter(pk__in=[g.pk for g in grants]).values_list("status", flat=True))


def test_a_real_worker_sends_signed_events_on_time(receiver, start_worker, report_figure):
    start_worker()
    grant = ask(UserFactory(username="alice"), hook_role(receiver), seconds=4)
    wait_for(lambda: Grant.objects.get(pk=grant.pk).status == "expired", timeout=20, what="activation and removal")
    grant.refresh_from_db()
    lag = (grant.ended_at - grant.expires_at).total_seconds()
    report_figure(f"revocation lag, webhook (real worker, ETA task, receiver answers at once): {lag:.3f} s")
    assert 0 <= lag < 2
    assert [hit.json["type"] for hit in receiver.received] == ["grant.activated", "grant.revoked"]


def test_a_hanging_target_does_not_hold_up_the_grants_of_other_targets(receiver, start_worker, report_figure):
    """Eight grants on a receiver that hangs for 10 s (timeout 1 s), eight on a healthy target, all
    expiring at the same instant: the healthy ones still end on time."""
    hanging_role = hook_role(receiver)
    healthy_role = RoleFactory(slug="sandbox", auto_approve=True, connector_config={"group": "sandbox-admins"})
    start_worker()
    hanging = [ask(UserFactory(username=f"h{i}"), hanging_role, seconds=8) for i in range(8)]
    healthy = [ask(UserFactory(username=f"ok{i}"), healthy_role, seconds=8) for i in range(8)]
    wait_for(lambda: set(statuses(hanging + healthy)) == {"active"}, timeout=10, what="activation of all grants")
    receiver.delay = 10  # from now on the receiver takes 10 s to answer

    wait_for(lambda: set(statuses(healthy)) == {"expired"}, timeout=20, what="removal of the healthy grants")
    lags = sorted(
        (g.ended_at - g.expires_at).total_seconds() for g in Grant.objects.filter(pk__in=[g.pk for g in healthy])
    )
    assert lags[-1] < 3, lags
    assert not Group.objects.get(name="sandbox-admins").user_set.exists()

    # The hanging target's grants are past expires_at (never effective); once their call times out
    # they are `revoking`, retried with backoff, and calls within the cool-down are not even made.
    wait_for(lambda: set(statuses(hanging)) == {"revoking"}, timeout=10, what="the hanging grants to be revoking")
    hanging_now = Grant.objects.filter(pk__in=[g.pk for g in hanging])
    report_figure(
        f"with a webhook hanging 10 s (timeout 1 s) for 8 grants, 8 django_group grants expiring at the same "
        f"instant ended {lags[0]:.3f}-{lags[-1]:.3f} s late; the hanging ones: "
        + "; ".join(sorted(f"{g.status}, attempts {g.attempts}: {g.last_error[:60]}" for g in hanging_now))
    )
    for grant in hanging_now:
        assert not grant.is_effective()
        assert "did not answer within 1 s" in grant.last_error or "not tried" in grant.last_error
