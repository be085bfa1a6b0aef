"""The audit log (filters, chain status, exports) and the elevation review, for auditors and admins."""

import csv
import io
import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.preferences import time_zone_set
from broker.audit import status as chain_status
from broker.models import AuditEvent, AuditVerification, Eligibility
from broker.tasks import verify_audit
from grants.models import Grant
from grants.selectors import elevation_review
from tests.factories import GrantFactory, UserFactory
from tests.portal.conftest import mark_fresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def story(active_grant, requester, client):
    """alice requested, carol approved, the worker activated, alice relinquished."""
    grant = active_grant()
    client.force_login(requester)
    client.post(f"/grants/{grant.pk}/relinquish/")
    client.logout()
    return grant


def test_audit_log_is_for_auditors_and_staff(client, story, auditor, admin_user, requester, approver, outsider):
    for user, status in ((auditor, 200), (admin_user, 200), (requester, 403), (approver, 403), (outsider, 403)):
        client.force_login(user)
        assert client.get("/audit/").status_code == status, user
        assert client.get("/audit/export/?format=csv").status_code == status, user


def test_audit_log_needs_login(client):
    assert client.get("/audit/")["Location"].startswith("/account/login/")


def test_audit_log_shows_the_chain_verified_up_to_the_last_event(client, story, auditor):
    client.force_login(auditor)
    body = client.get("/audit/").content.decode()
    last = AuditEvent.objects.order_by("-seq").first().seq
    assert f"Hash chain verified up to event #{last}" in body


def test_audit_log_names_the_first_broken_event(client, story, auditor):
    victim = AuditEvent.objects.get(action="request.approval_given")
    AuditEvent.objects.filter(pk=victim.pk).update(data={"comment": "edited afterwards"})
    client.force_login(auditor)
    body = client.get("/audit/").content.decode()
    assert f"Hash chain broken at event #{victim.seq}" in body
    assert "the event was edited" in body


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("actor=carol", {"request.approval_given", "request.approved", "grant.scheduled"}),
        ("action=grant.", {"grant.scheduled", "grant.activated", "grant.relinquished"}),
        ("channel=worker", {"grant.activated"}),
        ("role=db-admin&action=request.approved", {"request.approved"}),
        ("subject=nobody", set()),
    ],
)
def test_audit_log_shows_only_the_events_matching_the_filter(client, story, auditor, query, expected):
    client.force_login(auditor)
    page = client.get(f"/audit/?{query}").context["page"]
    assert {e.action for e in page.object_list} == expected


def test_audit_log_filters_by_time_in_the_viewers_zone(client, story, auditor):
    client.force_login(auditor)
    time_zone_set(user=auditor, zone="Asia/Tokyo")
    local_now = timezone.now().astimezone(timezone.get_fixed_timezone(9 * 60))
    since = (local_now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    until = (local_now - timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M")
    assert client.get(f"/audit/?since={since}").context["page"].paginator.count == AuditEvent.objects.count()
    assert client.get(f"/audit/?until={until}").context["page"].paginator.count == 0


def test_csv_export_of_the_current_filter(client, story, auditor):
    client.force_login(auditor)
    response = client.get("/audit/export/?subject=alice&action=grant.&format=csv")
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["action"] for r in rows] == ["grant.scheduled", "grant.activated", "grant.relinquished"]
    assert [int(r["seq"]) for r in rows] == sorted(int(r["seq"]) for r in rows)  # oldest first
    assert json.loads(rows[-1]["data"])["end_reason"] == "relinquished"


def test_jsonl_export_keeps_the_hashes(client, story, auditor):
    client.force_login(auditor)
    response = client.get("/audit/export/?format=jsonl")
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert len(lines) == AuditEvent.objects.exclude(action="audit.exported").count()
    for previous, current in itertools.pairwise(lines):
        assert current["prev_hash"] == previous["hash"]


def export_to_file(client, path):
    response = client.get("/audit/export/?format=jsonl")
    path.write_bytes(b"".join(response.streaming_content))
    return path


def test_a_jsonl_export_verifies_offline_with_the_key(client, story, auditor, tmp_path):
    client.force_login(auditor)
    exported = export_to_file(client, tmp_path / "audit.jsonl")
    out = io.StringIO()
    call_command("audit_verify", "--export", str(exported), stdout=out)
    count = AuditEvent.objects.exclude(action="audit.exported").count()
    assert f"export OK: {count} event(s) verified (#1 to #{count}, contiguous" in out.getvalue()


def test_an_edited_line_of_an_export_fails_offline_verification(client, story, auditor, tmp_path):
    client.force_login(auditor)
    exported = export_to_file(client, tmp_path / "audit.jsonl")
    lines = exported.read_text().splitlines()
    edited = json.loads(lines[1]) | {"actor": "someone-else"}
    exported.write_text("\n".join([lines[0], json.dumps(edited), *lines[2:]]) + "\n")
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("audit_verify", "--export", str(exported), stderr=err)
    assert "BROKEN at event #2: its content does not match its MAC" in err.getvalue()


def test_csv_export_defuses_spreadsheet_formulas(client, auditor, many_events):
    from django.db import transaction

    from broker import audit
    from broker.models import Channel

    sneaky = UserFactory(username="+cmd")
    with transaction.atomic():
        audit.record("test.event", actor=sneaky, target=("thing", 1), via=Channel.CLI)
    client.force_login(auditor)
    body = b"".join(client.get("/audit/export/?format=csv").streaming_content).decode()
    assert ",'+cmd," in body


def test_audit_log_takes_constant_queries(client, auditor, many_events, constant_queries):
    client.force_login(auditor)
    constant_queries("/audit/", many_events)


def test_export_links_carry_the_filter(client, story, auditor):
    client.force_login(auditor)
    body = client.get("/audit/?actor=carol").content.decode()
    assert 'href="/audit/export/?actor=carol&amp;format=csv"' in body


# --- Elevation review ------------------------------------------------------------------------------


def test_review_page_draws_both_charts(client, story, auditor):
    client.force_login(auditor)
    response = client.get("/review/")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.count("<svg") == 2
    assert "Grants started per day, by role" in body and "Total elevated time per person" in body
    assert f'href="/grants/{story.pk}/"' in body


def test_review_period_is_validated(client, auditor):
    client.force_login(auditor)
    response = client.get("/review/?since=2026-03-10&until=2026-03-01")
    assert "The end comes before the start." in response.content.decode()
    response = client.get("/review/?since=2025-01-01&until=2026-03-01")
    assert "at most 92 days" in response.content.decode()


def test_the_review_page_says_when_nobody_held_a_privileged_role(client, auditor):
    client.force_login(auditor)
    assert "Nobody held a privileged role in this period." in client.get("/review/").content.decode()


def test_review_takes_constant_queries(client, auditor, role, constant_queries):
    client.force_login(auditor)
    constant_queries("/review/", lambda n: GrantFactory.create_batch(n, role=role))


def test_elevation_review_counts_grants_per_day_and_hours_held(db, role, auditor):
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for day, name in enumerate(("holder-a", "holder-b")):
        starts_at = start + timedelta(days=day, hours=10)
        GrantFactory(
            role=role,
            user=UserFactory(username=name),
            status=Grant.Status.EXPIRED,
            starts_at=starts_at,
            expires_at=starts_at + timedelta(hours=2),
            ended_at=starts_at + timedelta(hours=1, minutes=30),
        )
    review = elevation_review(auditor, start, start + timedelta(days=3), UTC, now=start + timedelta(days=2, hours=12))
    assert review.per_day == {role.slug: [1, 1, 0]}
    assert review.hours_per_user == [("holder-a", 1.5), ("holder-b", 1.5)]
    assert review.total_grants == 2


def test_staff_cannot_change_anything_through_export(client, admin_user):
    client.force_login(admin_user)
    mark_fresh(client)
    assert client.post("/audit/export/?format=csv").status_code == 405


def test_a_portal_export_is_recorded_in_the_trail(client, story, auditor):
    client.force_login(auditor)
    b"".join(client.get("/audit/export/?actor=carol&format=csv").streaming_content)
    event = AuditEvent.objects.get(action="audit.exported")
    assert (event.actor, event.channel) == (auditor, "portal")
    assert event.data == {"format": "csv", "filters": {"actor": "carol"}}


# --- Incremental verification ----------------------------------------------------------------------


def chain_on_page(client):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/audit/")
    assert response.status_code == 200
    return response.context["chain"], len(queries), response.content.decode()


def test_the_page_verifies_only_the_events_after_the_last_scheduled_walk(client, auditor, many_events):
    many_events(100)
    verify_audit()  # stores the point it verified: #100
    many_events(3)
    client.force_login(auditor)
    chain, queries_with_100_old, _ = chain_on_page(client)
    assert (chain.ok, chain.verified_seq, chain.walked_now) == (True, 103, 4)  # the stored point and 3 newer

    many_events(400)
    verify_audit()
    many_events(3)
    chain, queries_with_500_old, body = chain_on_page(client)
    assert (chain.verified_seq, chain.walked_now) == (506, 4)  # 500 more old events, no more rows read
    assert queries_with_500_old == queries_with_100_old
    assert "Hash chain verified up to event #506" in body
    assert "this page verified the 4 newest events from there" in body


def test_an_edit_older_than_the_stored_point_is_caught_by_the_next_scheduled_walk(client, auditor, many_events):
    many_events(20)
    verify_audit()
    AuditEvent.objects.filter(seq=5).update(data={"edited": "after the check"})
    client.force_login(auditor)
    assert chain_on_page(client)[0].ok  # the page trusts the stored walk for #1..#20

    result = verify_audit()

    assert (result["ok"], result["broken_seq"]) == (False, 5)
    chain, _, body = chain_on_page(client)
    assert (chain.ok, chain.broken_seq, chain.walked_now) == (False, 5, 0)
    assert "Hash chain broken at event #5" in body


def test_a_stored_verification_changed_in_the_database_is_not_trusted(client, auditor, many_events):
    many_events(5)
    verify_audit()
    AuditEvent.objects.filter(seq=3).update(data={"edited": "and the stored point moved"})
    AuditVerification.objects.update(seq=0, hash="0" * 64)  # as if nothing were verified yet
    client.force_login(auditor)
    chain, _, body = chain_on_page(client)
    assert not chain.ok
    assert "does not carry a valid MAC" in body


def test_too_many_new_events_are_left_to_the_scheduled_walk(client, auditor, many_events, monkeypatch):
    monkeypatch.setattr(chain_status, "PAGE_VERIFY_LIMIT", 10)
    many_events(5)
    verify_audit()
    many_events(11)
    client.force_login(auditor)
    chain, _, body = chain_on_page(client)
    assert (chain.ok, chain.verified_seq, chain.waiting, chain.walked_now) == (True, 5, 11, 0)
    assert "11 newer events are too many to verify while this page loads" in body


def test_audit_verify_can_start_from_the_stored_point(many_events):
    many_events(30)
    verify_audit()
    many_events(2)
    out = io.StringIO()
    call_command("audit_verify", "--incremental", stdout=out)
    assert "audit chain OK: 3 event(s) after #30 verified" in out.getvalue()


# --- Right-sizing ---------------------------------------------------------------------------------------


def test_auditors_see_the_unused_eligibilities_page(client, auditor, role, requester):
    Eligibility.objects.filter(role=role, user=requester).update(created_at=timezone.now() - timedelta(days=200))
    client.force_login(auditor)
    response = client.get("/review/unused/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "db-admin" in body and "alice" in body and "never" in body


def test_requesters_may_not_open_the_unused_eligibilities_page(client, requester):
    client.force_login(requester)
    assert client.get("/review/unused/").status_code == 403
