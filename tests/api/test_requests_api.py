"""POST/GET requests/ and the decisions on them."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

from approvals import services as approvals
from approvals.models import AccessRequest, Decision, IdempotencyKey
from broker.models import AuditEvent, Channel
from grants.models import Grant
from tests.factories import AccessRequestFactory
from tests.otp import authenticator, code_of, wrong_code_of

pytestmark = pytest.mark.django_db

BODY = {"role": "deploy", "duration_seconds": 3600, "justification": "release 1.2"}


def test_created_request_names_role_and_requester_by_slug_and_username(world, bearer):
    response = bearer(world.alice).post("/api/v1/requests/", BODY, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["role"] == "deploy"
    assert body["requester"] == "alice"
    assert body["status"] == "pending"
    assert body["duration_seconds"] == 3600
    assert body["approvals"] == []
    assert body["grant"] is None
    assert body["current_stage"] == 1
    assert AuditEvent.objects.filter(action="request.created", channel="api").exists()


def test_auto_approved_request_answers_with_its_grant(world, bearer):
    response = bearer(world.bob).post("/api/v1/requests/", {"role": "sandbox"}, format="json")
    assert response.status_code == 201
    assert response.json()["status"] == "approved"
    assert response.json()["grant"] is not None


def test_unknown_role_is_refused_like_a_role_one_is_not_eligible_for(world, bearer):
    unknown = bearer(world.alice).post("/api/v1/requests/", {**BODY, "role": "no-such-role"}, format="json")
    not_eligible = bearer(world.carol).post("/api/v1/requests/", BODY, format="json")
    assert unknown.status_code == not_eligible.status_code == 403
    assert unknown.json()["error"] == not_eligible.json()["error"] == "not_eligible"


def test_duration_above_the_role_maximum_is_a_field_error(world, bearer):
    response = bearer(world.alice).post("/api/v1/requests/", {**BODY, "duration_seconds": 5 * 3600}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert "duration_seconds" in response.json()["fields"]


def test_second_pending_request_for_the_same_role_is_a_conflict(world, bearer):
    alice = bearer(world.alice)
    assert alice.post("/api/v1/requests/", BODY, format="json").status_code == 201
    response = alice.post("/api/v1/requests/", BODY, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "duplicate_request"


# --- Idempotency-Key ----------------------------------------------------------------------------


def test_same_idempotency_key_and_body_returns_the_first_answer_without_a_second_request(world, bearer):
    alice = bearer(world.alice)
    first = alice.post("/api/v1/requests/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = alice.post("/api/v1/requests/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert AccessRequest.objects.filter(requester=world.alice, role=world.deploy).count() == 1


def test_same_idempotency_key_with_another_body_is_a_conflict(world, bearer):
    alice = bearer(world.alice)
    alice.post("/api/v1/requests/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    response = alice.post(
        "/api/v1/requests/", {**BODY, "duration_seconds": 60}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_key_reused"


def test_sending_the_defaults_is_the_same_request_as_leaving_them_out(world, bearer):
    # What a generated client sends (every optional field, with its default) and what curl sends.
    alice = bearer(world.alice)
    first = alice.post("/api/v1/requests/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = alice.post(
        "/api/v1/requests/",
        {**BODY, "ticket": "", "starts_at": None, "justification": BODY["justification"] + "  "},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


def test_the_same_start_written_in_another_zone_is_the_same_request(clock, world, bearer):
    alice = bearer(world.alice)
    first = alice.post(
        "/api/v1/requests/", {**BODY, "starts_at": "2026-03-02T11:00:00+01:00"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    again = alice.post(
        "/api/v1/requests/", {**BODY, "starts_at": "2026-03-02T10:00:00Z"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"


def test_idempotency_keys_belong_to_one_user(world, bearer):
    assert (
        bearer(world.alice).post("/api/v1/requests/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    )
    response = bearer(world.bob).post("/api/v1/requests/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 201
    assert response.json()["requester"] == "bob"


def test_a_failed_attempt_leaves_the_idempotency_key_free_for_a_corrected_retry(world, bearer):
    alice = bearer(world.alice)
    failed = alice.post(
        "/api/v1/requests/", {**BODY, "duration_seconds": 99999}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert failed.status_code == 400
    assert not IdempotencyKey.objects.exists()
    assert alice.post("/api/v1/requests/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201


def test_a_retry_may_bring_a_fresh_one_time_code_under_the_same_key(clock, world, bearer):
    world.deploy.requires_mfa = True
    world.deploy.save()
    device = authenticator(world.alice)
    alice = bearer(world.alice)
    first = alice.post(
        "/api/v1/requests/", {**BODY, "otp": code_of(world.alice)}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert first.status_code == 201
    clock.shift(30)
    again = alice.post("/api/v1/requests/", {**BODY, "otp": "000000"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    device.refresh_from_db()
    assert device.throttling_failure_count == 0  # the replay spent no code


@pytest.mark.parametrize("key", ["", "x" * 201, "bad key with spaces", "clé"])
def test_malformed_idempotency_key_is_a_field_error(world, bearer, key):
    response = bearer(world.alice).post("/api/v1/requests/", BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["fields"]


# --- MFA --------------------------------------------------------------------------------------


@pytest.fixture
def mfa_role(world):
    world.db_admin.requires_mfa = True
    world.db_admin.save()
    return world.db_admin


def test_approving_a_role_that_requires_mfa_needs_the_otp(world, mfa_role, bearer):
    authenticator(world.carol)
    response = bearer(world.carol).post(f"/api/v1/requests/{world.pending.pk}/approve/", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "mfa_required"


def test_approving_with_a_current_code_approves(world, mfa_role, bearer):
    authenticator(world.carol)
    response = bearer(world.carol).post(
        f"/api/v1/requests/{world.pending.pk}/approve/", {"otp": code_of(world.carol)}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "approved"
    assert response.json()["approvals"][0]["approver"] == "carol"


def test_denying_a_role_that_requires_mfa_without_the_otp_is_refused_and_changes_nothing(world, mfa_role, bearer):
    authenticator(world.carol)
    response = bearer(world.carol).post(
        f"/api/v1/requests/{world.pending.pk}/deny/", {"comment": "not now"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"] == "mfa_required"
    world.pending.refresh_from_db()
    assert world.pending.status == "pending"
    assert not world.pending.decisions.exists()


def test_denying_with_a_current_code_denies(world, mfa_role, bearer):
    authenticator(world.carol)
    response = bearer(world.carol).post(
        f"/api/v1/requests/{world.pending.pk}/deny/", {"comment": "not now", "otp": code_of(world.carol)}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "denied"
    assert response.json()["approvals"][0]["verdict"] == "deny"


def test_denying_without_a_device_says_how_to_enrol(world, mfa_role, bearer):
    response = bearer(world.carol).post(
        f"/api/v1/requests/{world.pending.pk}/deny/", {"comment": "not now"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"] == "mfa_not_enrolled"


def test_a_code_is_refused_the_second_time(clock, world, mfa_role, bearer, make_role):
    other = make_role(stages=[[world.carol]], slug="other", eligible=[world.bob])
    second = approvals.request_create(requester=world.bob, role=other, justification="x", via=Channel.PORTAL)
    other.requires_mfa = True
    other.save()
    authenticator(world.carol)
    code = code_of(world.carol)
    carol = bearer(world.carol)
    assert carol.post(f"/api/v1/requests/{world.pending.pk}/approve/", {"otp": code}, format="json").status_code == 200
    replay = carol.post(f"/api/v1/requests/{second.pk}/approve/", {"otp": code}, format="json")
    assert replay.status_code == 403
    assert replay.json()["error"] == "mfa_invalid"


def test_approver_without_a_device_is_told_how_to_enrol(world, mfa_role, bearer):
    response = bearer(world.carol).post(f"/api/v1/requests/{world.pending.pk}/approve/", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "mfa_not_enrolled"
    assert "/account/mfa/" in response.json()["detail"]


def test_approver_without_a_device_sending_a_code_is_told_how_to_enrol(world, mfa_role, bearer):
    response = bearer(world.carol).post(
        f"/api/v1/requests/{world.pending.pk}/approve/", {"otp": "123456"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"] == "mfa_not_enrolled"


def test_a_backup_code_approves_the_request_records_the_decision_and_audits_it(world, mfa_role, bearer):
    static = StaticDevice.objects.create(user=world.carol, name="backup", confirmed=True)
    StaticToken.objects.create(device=static, token="abcd1234")
    response = bearer(world.carol).post(
        f"/api/v1/requests/{world.pending.pk}/approve/", {"otp": "abcd1234", "comment": "ok"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    grant = Grant.objects.get(request=world.pending)
    assert body == {**body, "status": "approved", "grant": grant.pk, "current_stage": None}
    assert [(d["approver"], d["verdict"], d["comment"], d["channel"]) for d in body["approvals"]] == [
        ("carol", "approve", "ok", "api")
    ]
    world.pending.refresh_from_db()
    assert (world.pending.status, world.pending.decided_at) == (AccessRequest.Status.APPROVED, grant.created_at)
    decision = world.pending.decisions.get()
    assert (decision.approver, decision.verdict, decision.channel) == (world.carol, Decision.Verdict.APPROVE, "api")
    event = AuditEvent.objects.get(action="request.approved", target_id=str(world.pending.pk))
    assert (event.actor, event.channel, event.data["approvers"]) == (world.carol, Channel.API, ["carol"])
    assert not StaticToken.objects.filter(device=static).exists()  # spent


def test_wrong_codes_are_throttled_with_retry_after_and_audited(clock, world, mfa_role, bearer, settings):
    settings.API_OTP_FAILURE_LIMIT = 2
    device = authenticator(world.carol)
    carol = bearer(world.carol)
    wrong = wrong_code_of(world.carol)
    path = f"/api/v1/requests/{world.pending.pk}/approve/"
    statuses = []
    for _ in range(3):
        statuses.append(carol.post(path, {"otp": wrong}, format="json"))
        clock.shift(60)  # past django-otp's own per-device delay
        device.refresh_from_db()
    assert [r.status_code for r in statuses] == [403, 403, 429]
    assert int(statuses[-1]["Retry-After"]) > 0
    assert statuses[-1].json()["error"] == "throttled"
    assert AuditEvent.objects.filter(action="auth.step_up_failed", actor_name="carol").count() == 2


def test_requesting_a_break_glass_role_needs_a_code(world, bearer, make_role):
    make_role(slug="glass", break_glass=True, eligible=[world.alice])
    authenticator(world.alice)
    alice = bearer(world.alice)
    refused = alice.post("/api/v1/requests/", {"role": "glass", "justification": "fire"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"] == "mfa_required"
    allowed = alice.post(
        "/api/v1/requests/", {"role": "glass", "justification": "fire", "otp": code_of(world.alice)}, format="json"
    )
    assert allowed.status_code == 201
    assert allowed.json()["status"] == "approved"
    assert allowed.json()["break_glass"] is True


# --- Decisions --------------------------------------------------------------------------------------


def test_denying_ends_the_request_with_the_comment_recorded_and_audited(world, bearer):
    response = bearer(world.carol).post(
        f"/api/v1/requests/{world.pending.pk}/deny/", {"comment": "not during the freeze"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {**body, "status": "denied", "grant": None, "current_stage": None}
    assert [(d["approver"], d["verdict"], d["comment"]) for d in body["approvals"]] == [
        ("carol", "deny", "not during the freeze")
    ]
    world.pending.refresh_from_db()
    assert world.pending.status == AccessRequest.Status.DENIED
    assert world.pending.decided_at is not None
    assert not Grant.objects.filter(request=world.pending).exists()
    event = AuditEvent.objects.get(action="request.denied")
    assert (event.actor, event.channel, event.target_id) == (world.carol, Channel.API, str(world.pending.pk))
    assert event.data["comment"] == "not during the freeze"


def test_approving_a_decided_request_is_a_conflict_and_changes_nothing(world, bearer):
    approvals.request_deny(request_id=world.pending.pk, approver=world.carol, comment="no", via=Channel.PORTAL)
    response = bearer(world.carol).post(f"/api/v1/requests/{world.pending.pk}/approve/", {}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "already_decided"
    world.pending.refresh_from_db()
    assert world.pending.status == AccessRequest.Status.DENIED
    assert [d.verdict for d in world.pending.decisions.all()] == [Decision.Verdict.DENY]
    trail = AuditEvent.objects.filter(target_type="request", target_id=str(world.pending.pk)).order_by("seq")
    assert list(trail.values_list("action", flat=True)) == ["request.created", "request.denied"]


def test_deny_needs_a_comment(world, bearer):
    response = bearer(world.carol).post(f"/api/v1/requests/{world.pending.pk}/deny/", {}, format="json")
    assert response.status_code == 400
    assert "comment" in response.json()["fields"]


def test_the_requester_cancels_a_pending_request_and_it_is_audited(world, bearer):
    response = bearer(world.alice).post(f"/api/v1/requests/{world.pending.pk}/cancel/", format="json")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == (world.pending.pk, "cancelled")
    world.pending.refresh_from_db()
    assert world.pending.status == AccessRequest.Status.CANCELLED
    event = AuditEvent.objects.get(action="request.cancelled")
    assert (event.actor, event.channel, event.target_id) == (world.alice, Channel.API, str(world.pending.pk))


# --- Visibility and filters ------------------------------------------------------------------------


def ids(response) -> set[int]:
    return {item["id"] for item in response.json()["results"]}


def test_each_caller_lists_what_they_may_see(world, bearer):
    bobs = bearer(world.bob).post("/api/v1/requests/", BODY, format="json").json()["id"]
    everyone = set(AccessRequest.objects.values_list("pk", flat=True))
    alices = set(AccessRequest.objects.filter(requester=world.alice).values_list("pk", flat=True))
    assert ids(bearer(world.alice).get("/api/v1/requests/")) == alices
    assert ids(bearer(world.bob).get("/api/v1/requests/")) == {bobs}
    # carol approves db-admin and deploy, not the auto-approved sandbox
    assert ids(bearer(world.carol).get("/api/v1/requests/")) == {world.pending.pk, bobs}
    assert ids(bearer(world.erin).get("/api/v1/requests/")) == everyone
    assert ids(bearer(world.root, scopes=("read", "admin")).get("/api/v1/requests/")) == everyone


def test_an_approver_still_sees_a_request_they_decided_after_leaving_the_stage(world, bearer):
    approvals.request_deny(request_id=world.pending.pk, approver=world.carol, comment="no", via=Channel.PORTAL)
    world.db_admin.stages.get().users.remove(world.carol)
    response = bearer(world.carol).get(f"/api/v1/requests/{world.pending.pk}/")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["approvals"][0]["approver"]) == (world.pending.pk, "carol")


def test_requests_filter_by_status_role_and_requester(world, bearer):
    erin = bearer(world.erin)
    assert ids(erin.get("/api/v1/requests/?status=pending")) == {world.pending.pk}
    assert ids(erin.get("/api/v1/requests/?role=sandbox")) == {world.grant.request_id}
    assert ids(erin.get("/api/v1/requests/?requester=bob")) == set()
    assert erin.get("/api/v1/requests/?status=sleeping").status_code == 400


def test_lists_are_newest_first_and_paginated_with_a_bounded_page_size(world, bearer):
    for minutes in (1, 2, 3):
        AccessRequestFactory(
            requester=world.bob,
            role=world.deploy,
            status=AccessRequest.Status.CANCELLED,
            created_at=timezone.now() + timedelta(minutes=minutes),
        )
    erin = bearer(world.erin)
    page = erin.get("/api/v1/requests/?page_size=2").json()
    assert page["count"] == 5
    assert len(page["results"]) == 2
    created = [item["created_at"] for item in erin.get("/api/v1/requests/").json()["results"]]
    assert created == sorted(created, reverse=True)
    assert len(erin.get("/api/v1/requests/?page_size=200").json()["results"]) == 5
    for too_big_or_odd in ("201", "0", "-1", "ten"):
        response = erin.get(f"/api/v1/requests/?page_size={too_big_or_odd}")
        assert response.status_code == 400
        assert "page_size" in response.json()["fields"]
    assert erin.get("/api/v1/requests/?page=99").status_code == 404


def test_the_api_answers_with_the_stored_text_verbatim(world, bearer):
    text = "fix \u202egnp.exe\u202c now\u200b\nTicket: X"
    created = bearer(world.bob).post(
        "/api/v1/requests/", {"role": "db-admin", "justification": text, "ticket": "T\u200b1"}, format="json"
    )
    assert created.status_code == 201, created.json()
    body = bearer(world.carol).get(f"/api/v1/requests/{created.json()['id']}/").json()
    assert (body["justification"], body["ticket"]) == (text, "T\u200b1")


def test_approving_for_someone_no_longer_eligible_is_a_conflict(world, bearer):
    from broker.models import Eligibility

    Eligibility.objects.filter(role=world.db_admin, user=world.alice).delete()  # its reaction is queued for the commit
    response = bearer(world.carol).post(f"/api/v1/requests/{world.pending.pk}/approve/", {}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "requester_not_eligible"
    assert not Grant.objects.filter(request=world.pending).exists()


def test_a_request_refused_by_the_roles_conditions_says_which_and_why(world, bearer):
    deploy = world.alice.eligibilities.get(role__slug="deploy").role
    deploy.conditions = {"networks": ["10.0.0.0/8"]}
    deploy.save(update_fields=["conditions"])
    response = bearer(world.alice).post("/api/v1/requests/", BODY, format="json", REMOTE_ADDR="192.0.2.9")
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "condition_failed"
    assert body["conditions"] == [
        {"condition": "network", "reason": "your address 192.0.2.9 is outside the allowed networks (10.0.0.0/8)"}
    ]


def test_a_posture_header_sent_straight_to_the_broker_does_not_satisfy_a_posture_condition(world, bearer, settings):
    settings.DEVICE_POSTURE_HEADER = "X-Device-Posture"
    deploy = world.alice.eligibilities.get(role__slug="deploy").role
    deploy.conditions = {"posture": ["compliant"]}
    deploy.save(update_fields=["conditions"])
    response = bearer(world.alice).post(
        "/api/v1/requests/", BODY, format="json", REMOTE_ADDR="192.0.2.9", HTTP_X_DEVICE_POSTURE="compliant"
    )
    assert (response.status_code, response.json()["conditions"][0]["condition"]) == (403, "posture")


def test_a_request_names_its_resource_and_the_answer_carries_it(world, bearer, make_role):
    make_role(slug="envs", auto_approve=True, resources={"names": ["staging"]}, eligible=[world.alice])
    response = bearer(world.alice).post(
        "/api/v1/requests/", {"role": "envs", "resource": "staging", "justification": "release"}, format="json"
    )
    assert response.status_code == 201
    grant = bearer(world.alice).get(f"/api/v1/grants/{response.json()['grant']}/").json()
    assert (response.json()["resource"], grant["resource"]) == ("staging", "staging")


def test_a_request_for_an_unknown_resource_is_a_field_error(world, bearer, make_role):
    make_role(slug="envs", auto_approve=True, resources={"names": ["staging"]}, eligible=[world.alice])
    response = bearer(world.alice).post(
        "/api/v1/requests/", {"role": "envs", "resource": "qa", "justification": "release"}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["resource"]
