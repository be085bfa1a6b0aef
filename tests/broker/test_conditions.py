"""The pure function of role conditions: every kind, windows in a named zone across DST, IPv6."""

from datetime import UTC, datetime, time

import pytest

from broker.conditions import (
    Conditions,
    Context,
    Window,
    evaluate,
    from_stored,
    parse_hours,
    problems_in_stored,
    risk_of_events,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Berlin
WEEKDAYS = frozenset(range(5))


def refused(conditions: Conditions, **context) -> list[str]:
    return [r.condition for r in evaluate(conditions, Context(**{"now": NOW, **context})).refusals]


def office_hours(zone: str = "Europe/Berlin", hours: str = "08:00-18:00", days=WEEKDAYS) -> Conditions:
    start, end = parse_hours(hours)
    return Conditions(time_zone=zone, windows=(Window(days=frozenset(days), start=start, end=end),))


def test_no_conditions_allow_everything():
    assert evaluate(Conditions(), Context(now=NOW)).allowed


def test_an_address_inside_an_allowed_network_passes():
    assert refused(Conditions(networks=("10.0.0.0/8",)), client_ip="10.20.30.40") == []


def test_an_address_outside_every_allowed_network_is_refused_with_the_address():
    outcome = evaluate(Conditions(networks=("10.0.0.0/8",)), Context(now=NOW, client_ip="192.0.2.7"))
    assert [(r.condition, "192.0.2.7" in r.reason) for r in outcome.refusals] == [("network", True)]


def test_an_ipv6_address_inside_an_ipv6_range_passes():
    assert refused(Conditions(networks=("2001:db8::/32",)), client_ip="2001:db8:1::5") == []


def test_an_ipv6_address_outside_an_ipv6_range_is_refused():
    assert refused(Conditions(networks=("2001:db8::/32",)), client_ip="2001:db9::5") == ["network"]


def test_an_ipv4_mapped_ipv6_address_counts_as_its_ipv4_address():
    assert refused(Conditions(networks=("10.0.0.0/8",)), client_ip="::ffff:10.1.2.3") == []


def test_an_unknown_client_address_is_refused_where_networks_are_required():
    assert refused(Conditions(networks=("10.0.0.0/8",)), client_ip=None) == ["network"]


def test_a_moment_inside_a_window_on_the_zones_wall_clock_passes():
    assert refused(office_hours(), now=datetime(2026, 3, 2, 16, 59, tzinfo=UTC)) == []  # 17:59 in Berlin


def test_a_window_ends_at_its_end_minute():
    assert refused(office_hours(), now=datetime(2026, 3, 2, 17, 0, tzinfo=UTC)) == ["window"]  # 18:00 in Berlin


def test_a_moment_on_a_day_outside_the_window_is_refused_with_the_local_time():
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=UTC)
    outcome = evaluate(office_hours(), Context(now=saturday))
    assert [r.condition for r in outcome.refusals] == ["window"]
    assert "Sat 11:00 in Europe/Berlin" in outcome.refusals[0].reason


def test_a_window_follows_summer_time_after_the_spring_change():
    # 29 March 2026: Berlin moves from UTC+1 to UTC+2. 06:30 UTC is 08:30 local after the change.
    assert refused(office_hours(days=range(7)), now=datetime(2026, 3, 29, 6, 30, tzinfo=UTC)) == []


def test_the_same_utc_moment_is_outside_the_window_before_the_spring_change():
    # A week earlier, 06:30 UTC is 07:30 in Berlin (UTC+1): before 08:00.
    assert refused(office_hours(days=range(7)), now=datetime(2026, 3, 22, 6, 30, tzinfo=UTC)) == ["window"]


def test_the_skipped_hour_of_the_spring_change_never_matches_a_window_inside_it():
    # 02:00-03:00 does not exist in Berlin on 29 March 2026: 00:59 UTC is 01:59, 01:00 UTC is 03:00.
    night = office_hours(hours="02:00-03:00", days=range(7))
    assert refused(night, now=datetime(2026, 3, 29, 0, 59, tzinfo=UTC)) == ["window"]
    assert refused(night, now=datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == ["window"]


def test_the_repeated_hour_of_the_autumn_change_matches_twice():
    # 25 October 2026: 02:00-03:00 happens twice in Berlin, at 00:xx UTC and at 01:xx UTC.
    night = office_hours(hours="02:00-03:00", days=range(7))
    assert refused(night, now=datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) == []
    assert refused(night, now=datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == []


def test_a_window_past_midnight_covers_the_morning_after_a_listed_day():
    night = office_hours(zone="UTC", hours="22:00-06:00", days=[4])  # Friday night
    assert refused(night, now=datetime(2026, 3, 7, 5, 59, tzinfo=UTC)) == []  # Saturday 05:59
    assert refused(night, now=datetime(2026, 3, 7, 6, 0, tzinfo=UTC)) == ["window"]


def test_a_window_until_24_00_includes_the_last_minute_of_the_day():
    evening = office_hours(zone="UTC", hours="20:00-24:00", days=[0])
    assert refused(evening, now=datetime(2026, 3, 2, 23, 59, tzinfo=UTC)) == []
    assert refused(evening, now=datetime(2026, 3, 3, 0, 0, tzinfo=UTC)) == ["window"]


def test_an_accepted_posture_passes_whatever_its_case():
    assert refused(Conditions(posture=("compliant",)), posture="Compliant") == []


def test_another_posture_is_refused_and_named():
    outcome = evaluate(Conditions(posture=("compliant",)), Context(now=NOW, posture="jailbroken"))
    assert "'jailbroken'" in outcome.refusals[0].reason


def test_no_posture_signal_is_refused_where_one_is_required():
    assert refused(Conditions(posture=("compliant",)), posture=None) == ["posture"]


def test_a_risk_level_at_the_maximum_passes():
    assert refused(Conditions(max_risk="high"), risk="high") == []


def test_a_risk_level_above_the_maximum_is_refused():
    assert refused(Conditions(max_risk="low"), risk="high") == ["risk"]


def test_every_failed_condition_is_reported_at_once():
    everything = Conditions(
        networks=("10.0.0.0/8",),
        windows=office_hours().windows,
        time_zone="Europe/Berlin",
        posture=("compliant",),
        max_risk="low",
    )
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=UTC)
    assert refused(everything, now=saturday, client_ip="192.0.2.1", posture=None, risk="critical") == [
        "network",
        "window",
        "posture",
        "risk",
    ]


def test_at_activation_only_windows_and_risk_are_checked():
    everything = Conditions(networks=("10.0.0.0/8",), posture=("compliant",), max_risk="low")
    assert refused(everything, at_activation=True, risk="high") == ["risk"]


def test_the_stored_form_reads_back_into_conditions():
    stored = {"time_zone": "Europe/Berlin", "windows": [{"days": ["mon", "fri"], "hours": "08:00-18:00"}]}
    assert from_stored(stored).windows == (Window(days=frozenset({0, 4}), start=time(8), end=time(18)),)


def test_the_highest_recent_signal_is_the_risk_level():
    assert (risk_of_events([]), risk_of_events(["risk_high", "credential_compromised"])) == ("low", "critical")


@pytest.mark.parametrize("text", ["8:00-18:00", "08:00-08:00", "25:00-26:00", "08:00-24:30", "08:00"])
def test_hours_that_are_not_a_span_of_the_day_are_rejected(text):
    with pytest.raises(ValueError):
        parse_hours(text)


def test_conditions_typed_in_the_admin_are_checked_like_a_policy_file():
    assert problems_in_stored({"windows": [{"hours": "8-18"}], "max_risk": "none"}) == [
        "window {'hours': '8-18'}: expected hours such as '08:00-18:00', got '8-18'",
        "max_risk must be one of low, high",
    ]
