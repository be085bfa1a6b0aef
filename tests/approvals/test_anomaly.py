"""Anomaly flags: each reason, scored against a history the factories build, and what a flag does."""

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import anomaly, services
from approvals.models import AccessRequest
from broker.errors import NotAllowed
from broker.models import AuditEvent
from tests.conftest import T0
from tests.factories import AccessRequestFactory, UserFactory

pytestmark = pytest.mark.django_db

CONFIG = anomaly.Config(
    lookback=timedelta(days=90),
    min_history=5,
    burst_count=5,
    burst_window=timedelta(minutes=10),
    duration_factor=3,
)


@pytest.fixture(autouse=True)
def _scoring_on(settings):
    settings.ANOMALY_SCORING = True
    settings.ANOMALY_IGNORE = []


def past(user, role, *, days_ago, hour=9, duration=timedelta(hours=1), network="192.0.2.0/24"):
    """An approved request of ``user`` for ``role``, ``days_ago`` days before T0 at ``hour`` UTC."""
    at = (T0 - timedelta(days=days_ago)).replace(hour=hour, minute=0)
    return AccessRequestFactory(
        requester=user, role=role, status="approved", created_at=at, duration=duration, network=network
    )


def reasons_for(user, role, *, at=T0, duration=timedelta(hours=1), network="192.0.2.0/24"):
    summary = anomaly.history(requester_id=user.pk, role_id=role.pk, now=at, config=CONFIG)
    ask = anomaly.Ask(username=user.username, role=role.slug, at=at, duration=duration, network=network)
    return anomaly.score(ask, summary, CONFIG)


def codes(reasons):
    return [r.code for r in reasons]


def habits(user, role, *, count=6, **kwargs):
    """A regular: ``count`` requests for ``role`` on past days at 09:00 UTC, one hour each, from one network."""
    for day in range(1, count + 1):
        past(user, role, days_ago=day, **kwargs)


def test_a_request_like_the_usual_ones_has_no_reason(requester, role):
    habits(requester, role)
    assert reasons_for(requester, role) == []


def test_a_first_request_ever_is_not_flagged_for_being_a_first(requester, role):
    assert reasons_for(requester, role) == []


def test_asking_for_a_role_for_the_first_time_is_a_reason_naming_the_peers(requester, role, make_role, approver):
    other = make_role(stages=[[approver]], slug="web-admin")
    habits(requester, other)
    past(UserFactory(username="bob"), role, days_ago=3)
    reasons = reasons_for(requester, role)
    assert codes(reasons) == ["first_for_role"]
    assert reasons[0].sentence == "alice has not asked for db-admin in the last 90 days; 1 other person has."


def test_a_first_request_for_a_role_nobody_else_asked_for_says_so_in_words(requester, role, make_role, approver):
    habits(requester, make_role(stages=[[approver]], slug="web-admin"))
    reasons = reasons_for(requester, role)
    assert reasons[0].sentence == "alice has not asked for db-admin in the last 90 days; nobody else has either."


def test_a_request_older_than_the_lookback_does_not_count_as_having_asked(requester, role, make_role, approver):
    habits(requester, make_role(stages=[[approver]], slug="web-admin"))
    past(requester, role, days_ago=91)
    assert codes(reasons_for(requester, role)) == ["first_for_role"]


def test_an_hour_far_from_every_usual_one_is_a_reason(requester, role):
    habits(requester, role)
    reasons = reasons_for(requester, role, at=T0.replace(hour=3, minute=12))
    assert codes(reasons) == ["unusual_hour"]
    assert "Asked at 03:12 UTC; none of alice's 6 requests in the last 90 days" in reasons[0].sentence


def test_an_hour_next_to_a_usual_one_is_not_a_reason(requester, role):
    habits(requester, role)
    assert reasons_for(requester, role, at=T0.replace(hour=10, minute=30)) == []


def test_the_hour_is_not_judged_on_too_short_a_history(requester, role):
    habits(requester, role, count=4)
    assert reasons_for(requester, role, at=T0.replace(hour=3)) == []


def test_many_requests_in_a_short_time_are_a_reason(requester, role, make_role, approver):
    habits(requester, role)
    for minutes in (2, 4, 6, 8):
        other = make_role(stages=[[approver]], slug=f"burst-{minutes}")
        AccessRequestFactory(requester=requester, role=other, created_at=T0 - timedelta(minutes=minutes))
    reasons = reasons_for(requester, role)
    assert codes(reasons) == ["burst"]
    assert reasons[0].sentence == "alice made 5 requests within 10 min (this one included)."


def test_a_duration_far_above_the_persons_norm_is_a_reason(requester, role):
    habits(requester, role)
    reasons = reasons_for(requester, role, duration=timedelta(hours=4))
    assert codes(reasons) == ["long_duration"]
    assert reasons[0].sentence == "Asked for 4 h of db-admin, more than 3 times their usual 1 h."


def test_without_an_own_norm_the_peers_duration_is_the_norm(requester, role, make_role, approver):
    habits(requester, make_role(stages=[[approver]], slug="web-admin"))
    for n in range(5):
        past(UserFactory(username=f"peer{n}"), role, days_ago=n + 1, duration=timedelta(minutes=30))
    reasons = reasons_for(requester, role, duration=timedelta(hours=2))
    assert codes(reasons) == ["first_for_role", "long_duration"]
    assert reasons[1].sentence.endswith("more than 3 times their peers' usual 30 min.")


def test_a_network_not_seen_in_the_persons_history_is_a_reason(requester, role):
    habits(requester, role)
    reasons = reasons_for(requester, role, network="203.0.113.0/24")
    assert codes(reasons) == ["new_network"]
    assert reasons[0].sentence == "Asked from 203.0.113.0/24, a network alice has not used in the last 90 days."


def test_an_unknown_network_is_not_a_reason(requester, role):
    habits(requester, role)
    assert reasons_for(requester, role, network="") == []


def test_ignored_codes_never_flag(requester, role):
    habits(requester, role)
    summary = anomaly.history(requester_id=requester.pk, role_id=role.pk, now=T0, config=CONFIG)
    ask = anomaly.Ask(username="alice", role=role.slug, at=T0, duration=timedelta(hours=1), network="203.0.113.0/24")
    config = anomaly.Config(**{**CONFIG.__dict__, "ignore": frozenset({"new_network"})})
    assert anomaly.score(ask, summary, config) == []


def test_addresses_are_compared_by_network():
    assert anomaly.network_of("192.0.2.77") == "192.0.2.0/24"
    assert anomaly.network_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert anomaly.network_of("not an address") == ""


def test_scoring_reads_a_bounded_history_in_four_queries(requester, role, django_assert_num_queries):
    habits(requester, role, count=30)
    with django_assert_num_queries(4):
        anomaly.history(requester_id=requester.pk, role_id=role.pk, now=T0, config=CONFIG, limit=10)


# --- What a flag does -------------------------------------------------------------------------------


def test_a_flagged_request_for_a_role_without_mfa_needs_a_step_up_and_says_why(requester, role, clock):
    habits(requester, role)
    clock.move_to(T0.replace(hour=3))
    with pytest.raises(NotAllowed, match=r"unusual for you.*Asked at 03:00 UTC") as caught:
        services.request_create(requester=requester, role=role, justification="x", via="portal", ip="192.0.2.9")
    assert caught.value.code == "mfa_required"
    assert not AccessRequest.objects.filter(created_at=timezone.now()).exists()


def test_a_flagged_request_with_a_fresh_second_factor_is_stored_with_its_reasons(requester, role, clock):
    habits(requester, role)
    clock.move_to(T0.replace(hour=3))
    req = services.request_create(
        requester=requester, role=role, justification="x", via="portal", ip="192.0.2.9", mfa_at=timezone.now()
    )
    assert req.flagged
    assert [r["code"] for r in req.flag_reasons] == ["unusual_hour"]
    assert req.network == "192.0.2.0/24"


def test_the_flag_and_its_reasons_are_in_the_audit_event(requester, role, clock):
    habits(requester, role)
    req = services.request_create(
        requester=requester, role=role, justification="x", via="api", ip="203.0.113.5", mfa_at=timezone.now()
    )
    event = AuditEvent.objects.get(action="request.created", target_id=str(req.pk))
    assert event.data["flagged"] is True
    assert event.data["flag_reasons"][0]["code"] == "new_network"


def test_a_usual_request_needs_no_step_up_and_is_not_flagged(requester, role, clock):
    habits(requester, role)
    req = services.request_create(requester=requester, role=role, justification="x", via="portal", ip="192.0.2.9")
    assert (req.flagged, req.flag_reasons) == (False, [])


def test_with_scoring_off_nothing_is_flagged(requester, role, clock, settings):
    settings.ANOMALY_SCORING = False
    habits(requester, role)
    clock.move_to(T0.replace(hour=3))
    req = services.request_create(requester=requester, role=role, justification="x", via="portal", ip="203.0.113.5")
    assert not req.flagged
