"""GET audit/ (filters, cursor pages) and GET audit/export/ (streamed CSV or JSON Lines)."""

import csv
import io
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import transaction

from broker import audit
from broker.models import AuditEvent, Channel

pytestmark = pytest.mark.django_db


def lines(response) -> list[str]:
    assert response.streaming, "exports are streamed"
    return b"".join(response.streaming_content).decode().splitlines()


def test_audit_page_is_newest_first_with_the_chain_fields(world, bearer):
    body = bearer(world.erin).get("/api/v1/audit/").json()
    seqs = [event["seq"] for event in body["results"]]
    assert seqs == sorted(seqs, reverse=True)
    assert {"actor", "action", "role", "subject", "channel", "data", "hash", "prev_hash"} <= set(body["results"][0])


def test_audit_filters_by_actor_action_role_channel_and_time(clock, world, bearer):
    erin = bearer(world.erin)
    assert {e["action"] for e in erin.get("/api/v1/audit/?actor=alice").json()["results"]} == {"request.created"}
    assert {e["role"] for e in erin.get("/api/v1/audit/?role=sandbox").json()["results"]} == {"sandbox"}
    assert erin.get("/api/v1/audit/?action=grant.activated").json()["results"][0]["channel"] == "worker"
    assert erin.get("/api/v1/audit/?channel=email").json()["results"] == []
    assert len(erin.get("/api/v1/audit/?since=2026-03-02T09:00:00Z").json()["results"]) == AuditEvent.objects.count()
    assert erin.get("/api/v1/audit/?until=2026-03-02T09:00:00%2B00:00").json()["results"] == []


@pytest.mark.parametrize(
    "value", ["2026-03-02T09:00:00", "yesterday", "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"]
)
def test_naive_unreadable_or_out_of_range_times_are_400(world, bearer, value):
    response = bearer(world.erin).get("/api/v1/audit/", {"since": value})
    assert response.status_code == 400
    assert "since" in response.json()["fields"]


@pytest.mark.parametrize("path", ["/api/v1/audit/export/?format=xml", "/api/v1/audit/?format=xml"])
def test_unknown_export_format_is_400(world, bearer, path):
    response = bearer(world.erin).get(path)
    assert response.status_code == 400
    assert "format" in response.json()["fields"]


def test_jsonl_export_streams_every_matching_event_oldest_first(world, bearer):
    response = bearer(world.erin).get("/api/v1/audit/export/?format=jsonl&role=sandbox")
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert "attachment" in response["Content-Disposition"]
    events = [json.loads(line) for line in lines(response)]
    expected = list(AuditEvent.objects.filter(role="sandbox").order_by("seq").values_list("seq", flat=True))
    assert [e["seq"] for e in events] == expected


def test_csv_export_has_a_header_and_one_row_per_event(world, bearer):
    response = bearer(world.erin).get("/api/v1/audit/export/?format=csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO("\n".join(lines(response)))))
    assert len(rows) == AuditEvent.objects.exclude(action="audit.exported").count()
    assert rows[0]["action"] == AuditEvent.objects.order_by("seq").first().action


def test_csv_export_defuses_spreadsheet_formulas(world, bearer):
    with transaction.atomic():
        audit.record("note", actor=world.alice, target=None, via=Channel.API, subject="=HYPERLINK(1)", data={})
    response = bearer(world.erin).get("/api/v1/audit/export/?format=csv&action=note")
    [row] = list(csv.DictReader(io.StringIO("\n".join(lines(response)))))
    assert row["subject"] == "'=HYPERLINK(1)"


def test_export_reads_the_table_in_chunks_not_at_once(world, bearer, monkeypatch):
    from django.db.models.query import QuerySet

    seen = {}
    original = QuerySet.iterator

    def spy(self, chunk_size=None):
        seen["chunk_size"] = chunk_size
        return original(self, chunk_size=chunk_size)

    monkeypatch.setattr(QuerySet, "iterator", spy)
    lines(bearer(world.erin).get("/api/v1/audit/export/?format=jsonl"))
    assert seen["chunk_size"] == 2000


def test_audit_cursor_pages_walk_the_whole_trail(world, bearer):
    erin = bearer(world.erin)
    page = erin.get("/api/v1/audit/?page_size=2").json()
    seen = [e["seq"] for e in page["results"]]
    while page["next"]:
        page = erin.get(page["next"]).json()
        seen += [e["seq"] for e in page["results"]]
    assert seen == sorted(AuditEvent.objects.values_list("seq", flat=True), reverse=True)
    assert erin.get("/api/v1/audit/?cursor=garbage").status_code == 404


@pytest.mark.parametrize("parameter", ["page_size=10", "cursor=cD0y", "page=2"])
def test_the_export_refuses_paging_parameters_it_would_ignore(world, bearer, parameter):
    response = bearer(world.erin).get(f"/api/v1/audit/export/?format=jsonl&{parameter}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        ("text/csv", "text/csv"),
        ("application/x-ndjson", "application/x-ndjson"),
        ("application/jsonl", "application/x-ndjson"),
        ("application/json;q=0.5, text/csv", "text/csv"),
        ("*/*", "application/x-ndjson"),
        (None, "application/x-ndjson"),
    ],
)
def test_the_export_format_follows_accept_when_format_is_left_out(world, bearer, accept, media_type):
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = bearer(world.erin).get("/api/v1/audit/export/?role=sandbox", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(media_type)
    assert response["Content-Disposition"].endswith('.csv"' if media_type == "text/csv" else '.jsonl"')


def test_format_wins_over_accept(world, bearer):
    response = bearer(world.erin).get("/api/v1/audit/export/?format=csv", HTTP_ACCEPT="application/x-ndjson")
    assert response["Content-Type"].startswith("text/csv")


def test_an_accept_the_export_cannot_answer_is_a_json_406(world, bearer):
    response = bearer(world.erin).get("/api/v1/audit/export/", HTTP_ACCEPT="application/json")
    assert response.status_code == 406
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "not_acceptable"
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_the_old_export_through_the_list_still_works_and_says_it_is_deprecated(world, bearer):
    response = bearer(world.erin).get("/api/v1/audit/?format=csv&role=sandbox")
    assert response["Content-Type"].startswith("text/csv")
    assert response["Deprecation"].startswith("@")
    assert response["Link"] == '</api/v1/audit/export/>; rel="successor-version"'
    new = bearer(world.erin).get("/api/v1/audit/export/?format=csv&role=sandbox")
    assert lines(response)[1:] == lines(new)[1:]


def test_the_old_export_refuses_a_malformed_page_size_like_the_pages_do(world, bearer):
    response = bearer(world.erin).get("/api/v1/audit/?format=jsonl&page_size=6789853")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"


def test_audit_pages_carry_the_next_cursor(world, bearer):
    erin = bearer(world.erin)
    page = erin.get("/api/v1/audit/?page_size=2").json()
    assert parse_qs(urlsplit(page["next"]).query)["cursor"] == [page["next_cursor"]]
    following = erin.get("/api/v1/audit/", {"page_size": 2, "cursor": page["next_cursor"]}).json()
    assert following == erin.get(page["next"]).json()
    while page["next"]:
        page = erin.get(page["next"]).json()
    assert page["next_cursor"] is None


def test_an_export_is_recorded_with_who_asked_and_the_filter(world, bearer):
    lines(bearer(world.erin).get("/api/v1/audit/export/?format=jsonl&role=sandbox"))
    event = AuditEvent.objects.get(action="audit.exported")
    assert (event.actor_name, event.channel, event.ip) == ("erin", "api", "127.0.0.1")
    assert event.data == {"format": "jsonl", "filters": {"role": "sandbox"}}
    assert audit.verify().ok


def test_an_export_is_a_snapshot_up_to_its_own_record(world, bearer):
    erin = bearer(world.erin)
    before = AuditEvent.objects.count()
    first = [json.loads(line) for line in lines(erin.get("/api/v1/audit/export/?format=jsonl"))]
    second = [json.loads(line) for line in lines(erin.get("/api/v1/audit/export/?format=jsonl"))]
    assert len(first) == before
    assert [e["action"] for e in second[before:]] == ["audit.exported"]  # the first export, not its own


def test_every_exported_line_is_an_audit_export_row_of_the_schema(world, bearer):
    import jsonschema

    from broker.audit.export import FIELDS, ROW_SCHEMA

    assert list(ROW_SCHEMA["properties"]) == FIELDS == ROW_SCHEMA["required"]
    schema = {**ROW_SCHEMA, "additionalProperties": False}
    for line in lines(bearer(world.erin).get("/api/v1/audit/export/?format=jsonl")):
        jsonschema.validate(json.loads(line), schema)
