"""SCIM 2.0: the IdP pushes joiners, movers and leavers; a leaver loses everything at once."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from accounts.models import ApiToken, ExternalIdentity
from accounts.tokens import token_create
from approvals import services as approvals
from approvals.models import AccessRequest
from broker.models import AuditEvent, Channel
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory

pytestmark = pytest.mark.django_db

TOKEN = "scim-token-for-tests-0123456789abcdef"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture(autouse=True)
def scim_on(settings):
    settings.SCIM_TOKEN = TOKEN
    settings.IDP_MANAGED_GROUP_PREFIX = "idp-"
    settings.SITE_URL = "https://access.example.com"


class Scim:
    def __init__(self, token=TOKEN):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method, path, body=None, *, raw=None, content_type="application/scim+json"):
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        kwargs = {"content_type": content_type} if data is not None else {}
        return getattr(self.client, method)(f"/scim/v2/{path}", data, headers=self.headers, **kwargs)

    def get(self, path):
        return self.call("get", path)

    def post(self, path, body, **kw):
        return self.call("post", path, body, **kw)

    def put(self, path, body):
        return self.call("put", path, body)

    def patch(self, path, *operations):
        return self.call("patch", path, {"schemas": [PATCH_SCHEMA], "Operations": list(operations)})

    def delete(self, path):
        return self.call("delete", path)


@pytest.fixture
def scim():
    return Scim()


def new_user(scim, user_name="olivia", **extra):
    body = {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "externalId": f"ext-{user_name}",
        "name": {"givenName": "Olivia", "familyName": "Park"},
        "emails": [{"value": f"{user_name}@example.com", "primary": True}],
        "active": True,
        **extra,
    }
    response = scim.post("Users", body)
    assert response.status_code == 201, response.content
    return response.json()


def scim_error(response, status, scim_type=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/scim+json"
    body = response.json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == str(status)
    if scim_type:
        assert body["scimType"] == scim_type
    return body


# --- Creating, reading, updating -------------------------------------------------------------------


def test_creating_a_user_makes_an_account_that_signs_in_only_through_the_idp(scim):
    body = new_user(scim)
    user = User.objects.get(username="olivia")
    assert body["id"] == str(user.pk)
    assert body["meta"]["location"] == f"https://access.example.com/scim/v2/Users/{user.pk}"
    assert (user.email, user.first_name, user.last_name, user.is_active) == (
        "olivia@example.com",
        "Olivia",
        "Park",
        True,
    )
    assert not user.has_usable_password()
    assert ExternalIdentity.objects.get(user=user).external_id == "ext-olivia"
    event = AuditEvent.objects.get(action="user.created")
    assert (event.channel, event.subject) == ("scim", "olivia")


def test_users_are_found_by_username_and_external_id(scim):
    new_user(scim, "olivia")
    new_user(scim, "paul")
    found = scim.get('Users?filter=userName eq "OLIVIA"').json()
    assert found["totalResults"] == 1 and found["Resources"][0]["userName"] == "olivia"
    found = scim.get('Users?filter=externalId eq "ext-paul"').json()
    assert [r["userName"] for r in found["Resources"]] == ["paul"]
    everyone = scim.get("Users?startIndex=2&count=1").json()
    assert (everyone["totalResults"], everyone["startIndex"], everyone["itemsPerPage"]) == (2, 2, 1)


def test_local_accounts_are_invisible_to_scim_and_never_taken_over(scim, admin_user):
    assert scim.get(f'Users?filter=userName eq "{admin_user.username}"').json()["totalResults"] == 0
    scim_error(scim.get(f"Users/{admin_user.pk}"), 404)
    scim_error(scim.post("Users", {"schemas": [USER_SCHEMA], "userName": admin_user.username}), 409, "uniqueness")
    admin_user.refresh_from_db()
    assert admin_user.is_active and not ExternalIdentity.objects.exists()


def test_updating_a_user_with_put_and_patch(scim):
    pk = new_user(scim)["id"]
    response = scim.put(f"Users/{pk}", {"schemas": [USER_SCHEMA], "userName": "olivia.park", "externalId": "ext-olivia",
                                         "emails": [{"value": "o.park@example.com"}]})  # fmt: skip
    assert response.status_code == 200, response.content
    assert User.objects.get(pk=pk).username == "olivia.park"
    response = scim.patch(f"Users/{pk}", {"op": "replace", "path": "name.familyName", "value": "Kim"})
    assert response.status_code == 200 and response.json()["name"]["familyName"] == "Kim"
    assert User.objects.get(pk=pk).last_name == "Kim"


# --- Leavers ---------------------------------------------------------------------------------------


@pytest.fixture
def leaver_world(scim, django_capture_on_commit_callbacks):
    """olivia (from SCIM) in idp-dba: an active grant of sandbox, a pending request for prod-db,
    a live session and an API token."""
    pk = new_user(scim)["id"]
    olivia = User.objects.get(pk=pk)
    dba = Group.objects.create(name="idp-dba")
    olivia.groups.add(dba)
    carol = UserFactory(username="carol")
    prod = RoleFactory(slug="prod-db")
    StageFactory(role=prod, position=0, users=[carol])
    sandbox = RoleFactory(slug="sandbox", auto_approve=True, connector_config={"group": "sandbox-admins"})
    for role in (prod, sandbox):
        EligibilityFactory(role=role, group=dba)
    pending = approvals.request_create(
        requester=olivia, role=prod, duration=timedelta(hours=1), justification="INC-1", via=Channel.PORTAL
    )
    with django_capture_on_commit_callbacks(execute=True):
        grant = approvals.request_create(
            requester=olivia, role=sandbox, duration=timedelta(hours=1), justification="INC-1", via=Channel.PORTAL
        ).grant
    grant.refresh_from_db()
    assert grant.status == "active" and olivia.groups.filter(name="sandbox-admins").exists()
    browser = Client()
    browser.force_login(olivia)
    assert browser.get("/").status_code == 200
    _, token = token_create(user=olivia, scopes=["read"], via=Channel.CLI)
    return olivia, pending, grant, browser, token


def assert_left(olivia, pending, grant, browser, token):
    olivia.refresh_from_db()
    assert not olivia.is_active
    pending.refresh_from_db()
    assert pending.status == AccessRequest.Status.CANCELLED
    grant.refresh_from_db()
    assert (grant.status, grant.end_reason) == ("revoked", "eligibility_lost")
    assert not olivia.groups.filter(name="sandbox-admins").exists()  # gone from the target too
    assert browser.get("/").status_code == 302  # the session is over
    assert Client().get("/api/v1/roles/", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert ApiToken.objects.get(user=olivia).revoked_at is not None
    for action in ("user.deactivated", "auth.sessions_ended", "token.revoked"):
        assert AuditEvent.objects.get(action=action, subject="olivia").channel == "scim", action


def test_active_false_ends_everything_the_leaver_had(scim, leaver_world, django_capture_on_commit_callbacks):
    olivia = leaver_world[0]
    with django_capture_on_commit_callbacks(execute=True):
        response = scim.patch(f"Users/{olivia.pk}", {"op": "Replace", "path": "active", "value": False})
    assert response.status_code == 200 and response.json()["active"] is False
    assert_left(*leaver_world)


def test_entras_replace_without_path_and_string_false_is_understood(
    scim, leaver_world, django_capture_on_commit_callbacks
):
    olivia = leaver_world[0]
    with django_capture_on_commit_callbacks(execute=True):
        response = scim.patch(f"Users/{olivia.pk}", {"op": "Replace", "value": {"active": "False"}})
    assert response.status_code == 200, response.content
    assert_left(*leaver_world)


def test_delete_ends_everything_and_the_user_is_gone_from_scim(scim, leaver_world, django_capture_on_commit_callbacks):
    olivia = leaver_world[0]
    with django_capture_on_commit_callbacks(execute=True):
        response = scim.delete(f"Users/{olivia.pk}")
    assert response.status_code == 204
    assert_left(*leaver_world)
    scim_error(scim.get(f"Users/{olivia.pk}"), 404)
    assert User.objects.filter(pk=olivia.pk).exists()  # kept: requests and grants hold on to their people


def test_a_user_provisioned_again_after_delete_comes_back_as_the_same_account(scim):
    pk = new_user(scim)["id"]
    scim.delete(f"Users/{pk}")
    body = new_user(scim)
    assert body["id"] == pk and body["active"] is True
    assert User.objects.get(pk=pk).is_active


# --- Groups ----------------------------------------------------------------------------------------


def test_a_group_is_created_with_members_and_found_by_name(scim):
    olivia = new_user(scim)["id"]
    response = scim.post(
        "Groups", {"schemas": [GROUP_SCHEMA], "displayName": "idp-dba", "members": [{"value": olivia}]}
    )
    assert response.status_code == 201, response.content
    group = Group.objects.get(name="idp-dba")
    assert list(group.user_set.values_list("username", flat=True)) == ["olivia"]
    found = scim.get('Groups?filter=displayName eq "idp-dba"').json()
    assert found["Resources"][0]["members"] == [{"value": olivia, "display": "olivia", "type": "User"}]
    assert scim.get(f"Users/{olivia}").json()["groups"][0]["display"] == "idp-dba"


def test_groups_the_broker_does_not_manage_are_refused_and_hidden(scim):
    RoleFactory(slug="db", connector_config={"group": "idp-db-admins"})
    Group.objects.create(name="auditors")
    scim_error(scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "payroll"}), 403)
    scim_error(scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "idp-db-admins"}), 403)
    assert scim.get("Groups").json()["totalResults"] == 0
    scim_error(scim.get(f"Groups/{Group.objects.get(name='auditors').pk}"), 404)


def test_removing_a_member_by_patch_ends_what_the_group_gave_at_once(
    scim, leaver_world, django_capture_on_commit_callbacks
):
    olivia, pending, grant, *_ = leaver_world
    group = Group.objects.get(name="idp-dba")
    with django_capture_on_commit_callbacks(execute=True):
        response = scim.patch(f"Groups/{group.pk}", {"op": "remove", "path": f'members[value eq "{olivia.pk}"]'})
    assert response.status_code == 200, response.content
    assert not olivia.groups.filter(name="idp-dba").exists()
    olivia.refresh_from_db()
    assert olivia.is_active
    pending.refresh_from_db()
    grant.refresh_from_db()
    assert pending.status == "cancelled"
    assert (grant.status, grant.end_reason) == ("revoked", "eligibility_lost")
    event = AuditEvent.objects.get(action="group.members_changed")
    assert (event.channel, event.data["removed"]) == ("scim", ["olivia"])


def test_adding_members_by_patch_and_replacing_them_by_put(scim):
    a, b = new_user(scim, "ann")["id"], new_user(scim, "ben")["id"]
    gid = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "idp-ops"}).json()["id"]
    response = scim.patch(f"Groups/{gid}", {"op": "add", "path": "members", "value": [{"value": a}, {"value": b}]})
    assert sorted(m["display"] for m in response.json()["members"]) == ["ann", "ben"]
    response = scim.put(
        f"Groups/{gid}", {"schemas": [GROUP_SCHEMA], "displayName": "idp-ops", "members": [{"value": b}]}
    )
    assert [m["display"] for m in response.json()["members"]] == ["ben"]


def test_deleting_a_group_empties_it_but_keeps_it_for_the_policy(scim):
    a = new_user(scim, "ann")["id"]
    gid = scim.post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": "idp-ops", "members": [{"value": a}]}).json()[
        "id"
    ]
    assert scim.delete(f"Groups/{gid}").status_code == 204
    assert Group.objects.get(pk=gid).user_set.count() == 0


# --- Refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789abcdef0123456", "Basic " + TOKEN, "Bearer "])
def test_a_wrong_or_missing_token_is_401(header):
    client = Client()
    headers = {"Authorization": header} if header else {}
    response = client.get("/scim/v2/Users", headers=headers)
    body = scim_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "detail" in body


def test_scim_is_off_without_a_token(settings):
    settings.SCIM_TOKEN = ""
    scim_error(Scim().get("Users"), 404)


def test_repeated_wrong_tokens_are_throttled_but_never_lock_out_the_right_one(settings):
    settings.API_AUTH_FAILURE_LIMIT = 3
    wrong = Scim("not-the-token")
    for _ in range(3):
        scim_error(wrong.get("Users"), 401)
    response = wrong.get("Users")  # the fourth past a limit of three
    scim_error(response, 429)
    assert int(response["Retry-After"]) > 0
    assert Scim().get("Users").status_code == 200  # the IdP, from the same address


def test_a_user_provisioned_again_without_active_comes_back_active(scim):
    pk = new_user(scim)["id"]
    scim.delete(f"Users/{pk}")
    response = scim.post("Users", {"schemas": [USER_SCHEMA], "userName": "olivia"})
    assert response.status_code == 201 and response.json()["active"] is True


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "scim_type"),
    [
        ("post", "Users", "{not json", 400, "invalidSyntax"),
        ("post", "Users", "[1, 2]", 400, "invalidSyntax"),
        ("post", "Users", '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}', 400, None),
        ("post", "Users", '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": 7}', 400, None),
        (
            "post",
            "Users",
            '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a b c"}',
            400,
            None,
        ),
        (
            "post",
            "Users",
            '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x", "emails": [{"value": "nope"}]}',
            400,
            None,
        ),
        (
            "post",
            "Users",
            '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "' + "x" * 200 + '"}',
            400,
            None,
        ),
        ("post", "Users", '{"schemas": ["urn:wrong"], "userName": "x"}', 400, None),
        ("post", "Users", '"\\ud800"', 400, None),
        ("post", "Groups", '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]}', 400, None),
        (
            "post",
            "Groups",
            '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "idp-x", "members": [{"value": "999999"}]}',
            400,
            None,
        ),
        (
            "post",
            "Groups",
            '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "idp-x", "members": [{"value": "abc"}]}',
            400,
            None,
        ),
        ("get", "Users?filter=userName", None, 400, "invalidFilter"),
        ("get", 'Users?filter=userName sw "a"', None, 400, "invalidFilter"),
        ("get", 'Users?filter=userName eq "a" or not (active eq true)', None, 400, "invalidFilter"),
        ("get", 'Users?filter=title eq "x"', None, 400, "invalidFilter"),
        ("get", "Users?startIndex=abc", None, 400, None),
        ("get", "Users?count=-1", None, 400, None),
        ("get", "Users/abc", None, 404, None),
        ("get", "Users/99999999999999999999999", None, 404, None),
        ("get", "Nope", None, 404, None),
        ("delete", "Users", None, 405, None),
    ],
)
def test_malformed_requests_get_scim_errors_never_a_500(scim, method, path, raw, status, scim_type):
    response = scim.call(method, path, raw=raw)
    scim_error(response, status, scim_type)


@pytest.mark.parametrize(
    "operations",
    [
        "not a list",
        [{"op": "explode", "path": "active", "value": False}],
        [{"op": "replace", "path": "nosuch", "value": 1}],
        [{"op": "replace", "path": "active", "value": {"deep": ["x"]}}],
        [{"op": "remove", "path": "members[value eq"}],
        [{"op": "replace", "path": "userName", "value": None}],
        [{"op": "replace", "path": "userName", "value": "carol"}],
        [],
    ],
)
def test_malformed_patches_get_scim_errors_never_a_500(scim, operations):
    UserFactory(username="carol")
    pk = new_user(scim)["id"]
    response = scim.call("patch", f"Users/{pk}", {"schemas": [PATCH_SCHEMA], "Operations": operations})
    assert 400 <= response.status_code < 500, response.content
    scim_error(response, response.status_code)
    assert User.objects.get(pk=pk).is_active


def test_a_body_that_is_not_scim_json_is_415(scim):
    scim_error(scim.call("post", "Users", raw="userName=x", content_type="application/x-www-form-urlencoded"), 415)


def test_a_body_over_64_kib_is_413(scim):
    big = json.dumps({"schemas": [USER_SCHEMA], "userName": "x", "title": "x" * 70000})
    scim_error(scim.call("post", "Users", raw=big), 413)


def test_service_provider_config_and_resource_types_describe_the_service(scim):
    config = scim.get("ServiceProviderConfig").json()
    assert config["patch"]["supported"] is True and config["bulk"]["supported"] is False
    types = scim.get("ResourceTypes").json()
    assert sorted(r["name"] for r in types["Resources"]) == ["Group", "User"]
