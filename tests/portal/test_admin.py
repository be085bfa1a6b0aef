"""The Django admin: a verified second factor to enter, a fresh step-up to change access, policy roles
read-only, and every change to the catalog, users and groups audited as admin.changed."""

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import services as approvals
from broker.models import AuditEvent, Channel, Eligibility, Role
from tests.factories import EligibilityFactory, GroupFactory, RoleFactory, StageFactory
from tests.otp import authenticator, code_of, sign_in_verified

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def post_data(response) -> dict:
    """What the admin's change form would send back unchanged: the main form and every inline."""
    data = {}

    def add(form):
        for name, field in form.fields.items():
            value = form[name].value()
            key = form.add_prefix(name)
            if isinstance(value, bool):
                if value:
                    data[key] = "on"
            elif isinstance(value, (list, tuple)):
                data[key] = [str(v) for v in value]
            elif value is not None:
                data[key] = str(value)
            if field.show_hidden_initial and value is not None:
                data[form.add_initial_prefix(name)] = str(value)

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for name, value in formset.management_form.initial.items():
            data[formset.management_form.add_prefix(name)] = str(value)
        for form in formset.initial_forms:
            add(form)
    return data


def changes(obj_action="admin.changed", **filters):
    return list(AuditEvent.objects.filter(action=obj_action, **filters).order_by("seq"))


@pytest.fixture
def root(admin_user):
    return admin_user


@pytest.fixture
def prod_db(approver, requester):
    role = RoleFactory(slug="prod-db", requires_mfa=True, auto_approve=False)
    StageFactory(role=role, users=[approver])
    EligibilityFactory(role=role, user=requester)
    return role


# --- Entering needs a verified second factor ----------------------------------------------------------


def test_a_staff_password_alone_never_reaches_a_change_form(client, root, prod_db):
    client.force_login(root)  # signed in with the password only (portal sign-in)
    response = client.get(f"/admin/broker/role/{prod_db.pk}/change/", follow=True)
    assert response.redirect_chain[0][0].startswith("/admin/login/")
    # The admin's sign-in sends a session without a verified factor to the step-up page, and back.
    assert response.redirect_chain[-1][0].startswith("/account/mfa/")
    assert "adminform" not in (response.context or {})


def test_a_staff_password_alone_cannot_post_a_change(client, root, prod_db):
    client.force_login(root)
    response = client.post(f"/admin/broker/role/{prod_db.pk}/change/", {"auto_approve": "on"})
    assert response.status_code == 302
    prod_db.refresh_from_db()
    assert prod_db.auto_approve is False and prod_db.requires_mfa is True


def test_the_admin_sign_in_asks_for_the_one_time_code_with_the_password(client, root):
    device = authenticator(root)
    without = client.post("/admin/login/", {"username": "root", "password": PASSWORD})
    assert without.status_code == 200
    assert "_auth_user_id" not in client.session
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD, "otp_token": code_of(device)}
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    # The code typed there counts as a fresh step-up: catalog pages open at once.
    assert client.get("/admin/broker/role/add/").status_code == 200


def test_a_portal_step_up_with_a_code_opens_the_admin(client, root):
    device = authenticator(root)
    client.force_login(root)
    assert client.get("/admin/").status_code == 302
    client.post("/account/mfa/verify/", {"code": code_of(device), "next": "/admin/"})
    assert client.get("/admin/").status_code == 200


def test_a_wrong_code_at_the_admin_sign_in_counts_as_a_failed_sign_in(client, root):
    device = authenticator(root)
    code = code_of(device)
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    for _ in range(5):
        client.post("/admin/login/", {"username": "root", "password": PASSWORD, "otp_token": wrong})
    response = client.post("/admin/login/", {"username": "root", "password": PASSWORD, "otp_token": code})
    assert b"Too many failed sign-ins" in response.content
    assert "_auth_user_id" not in client.session


# --- Changes need a fresh step-up ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/admin/broker/role/add/",
        "/admin/broker/role/{role}/change/",
        "/admin/broker/role/{role}/delete/",
        "/admin/auth/user/{user}/change/",
        "/admin/auth/group/add/",
    ],
)
def test_change_pages_send_a_stale_session_to_the_step_up_page_and_back(client, root, requester, path):
    role = RoleFactory()
    path = path.format(role=role.pk, user=requester.pk)
    sign_in_verified(client, root, fresh=False)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/account/mfa/verify/?next=")
    assert path.replace("/", "%2F") in response["Location"]


def test_a_stale_session_can_still_read_the_lists(client, root):
    sign_in_verified(client, root, fresh=False)
    assert client.get("/admin/broker/role/").status_code == 200


def test_a_stale_step_up_is_one_older_than_the_window(client, root, clock):
    sign_in_verified(client, root, fresh=True)
    clock.shift(timedelta(minutes=4))
    assert client.get("/admin/broker/role/add/").status_code == 200
    clock.shift(timedelta(minutes=2))
    assert client.get("/admin/broker/role/add/").status_code == 302


# --- Roles from the policy file are read-only --------------------------------------------------------


def test_a_policy_role_cannot_be_switched_to_auto_approve_or_off_mfa_in_the_admin(client, root, prod_db):
    prod_db.managed_by_policy = True
    prod_db.save()
    sign_in_verified(client, root)
    page = client.get(f"/admin/broker/role/{prod_db.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "comes from the policy file" in text and "apply_policy" in text
    data = post_data(page)
    data.pop("requires_mfa", None)
    data["auto_approve"] = "on"
    response = client.post(f"/admin/broker/role/{prod_db.pk}/change/", data)
    assert response.status_code == 403
    prod_db.refresh_from_db()
    assert (prod_db.auto_approve, prod_db.requires_mfa) == (False, True)
    assert not changes()


def test_the_stages_and_eligibility_of_a_policy_role_are_read_only_too(client, root, prod_db):
    prod_db.managed_by_policy = True
    prod_db.save()
    sign_in_verified(client, root)
    page = client.get(f"/admin/broker/role/{prod_db.pk}/change/")
    for inline in page.context["inline_admin_formsets"]:
        assert not inline.has_add_permission and not inline.has_change_permission
        assert not inline.has_delete_permission
    assert client.post(f"/admin/broker/role/{prod_db.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Role.objects.filter(pk=prod_db.pk).exists()


# --- Every change is audited as admin.changed ----------------------------------------------------------


def test_changing_a_role_in_the_admin_is_audited_with_the_fields_who_and_from_where(client, root, prod_db):
    sign_in_verified(client, root)
    data = post_data(client.get(f"/admin/broker/role/{prod_db.pk}/change/"))
    data.pop("requires_mfa")
    data["auto_approve"] = "on"
    response = client.post(f"/admin/broker/role/{prod_db.pk}/change/", data, REMOTE_ADDR="192.0.2.44")
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    (event,) = changes()
    assert (event.actor_name, event.channel, event.ip) == ("root", Channel.PORTAL, "192.0.2.44")
    assert (event.target_type, event.target_id, event.role) == ("role", str(prod_db.pk), "prod-db")
    assert event.data["model"] == "broker.role" and event.data["operation"] == "changed"
    assert event.data["fields"] == ["auto_approve", "requires_mfa"]
    assert event.data["changes"]["requires_mfa"] == {"from": True, "to": False}


def test_adding_and_removing_eligibility_in_the_admin_is_audited(client, root, prod_db, outsider):
    sign_in_verified(client, root)
    data = post_data(client.get(f"/admin/broker/role/{prod_db.pk}/change/"))
    prefix = "eligibilities"
    total = int(data[f"{prefix}-TOTAL_FORMS"])
    data[f"{prefix}-{total}-user"] = str(outsider.pk)
    data[f"{prefix}-{total}-role"] = str(prod_db.pk)
    data[f"{prefix}-TOTAL_FORMS"] = str(total + 1)
    data[f"{prefix}-0-DELETE"] = "on"
    response = client.post(f"/admin/broker/role/{prod_db.pk}/change/", data)
    assert response.status_code == 302
    assert list(Eligibility.objects.filter(role=prod_db).values_list("user__username", flat=True)) == ["mallory"]
    events = changes(target_type="eligibility")
    assert sorted(e.data["operation"] for e in events) == ["created", "deleted"]
    assert all(e.data["model"] == "broker.eligibility" and e.role == "prod-db" for e in events)


def test_making_someone_staff_or_changing_their_groups_in_the_admin_is_audited_about_them(client, root, requester):
    dba = GroupFactory(name="dba")
    requester.date_joined = requester.date_joined.replace(microsecond=0)  # as the form shows it
    requester.save()
    sign_in_verified(client, root)
    path = f"/admin/auth/user/{requester.pk}/change/"
    data = post_data(client.get(path))
    for key in ("date_joined", "initial-date_joined"):  # a split date and time in the admin
        day, time = data.pop(key).split(" ")
        data[f"{key}_0"], data[f"{key}_1"] = day, time[:8]
    data["is_staff"] = "on"
    data["groups"] = [str(dba.pk)]
    response = client.post(path, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    (event,) = changes()
    assert (event.subject, event.actor_name, event.target_type) == ("alice", "root", "user")
    assert set(event.data["fields"]) == {"is_staff", "groups"}
    assert event.data["changes"]["is_staff"] == {"from": False, "to": True}
    assert event.data["changes"]["groups"] == {"from": [], "to": ["dba"]}


def test_setting_a_new_password_in_the_admin_is_audited_without_the_password(client, root, requester):
    sign_in_verified(client, root)
    new = "a brand new long passphrase 42"
    response = client.post(
        f"/admin/auth/user/{requester.pk}/password/",
        {"password1": new, "password2": new, "usable_password": "true"},
    )
    assert response.status_code == 302
    (event,) = changes()
    assert event.subject == "alice" and event.data["fields"] == ["password"]
    assert new not in str(event.data)
    requester.refresh_from_db()
    assert requester.check_password(new)


def test_changing_a_groups_members_in_the_admin_is_audited(client, root, requester, approver):
    group = GroupFactory(name="dba-leads")
    group.user_set.add(approver)
    sign_in_verified(client, root)
    path = f"/admin/auth/group/{group.pk}/change/"
    data = post_data(client.get(path))
    data["members"] = [str(requester.pk)]
    assert client.post(path, data).status_code == 302
    assert list(group.user_set.values_list("username", flat=True)) == ["alice"]
    (event,) = changes()
    assert (event.target_type, event.data["model"]) == ("group", "auth.group")
    assert (event.data["members_added"], event.data["members_removed"]) == (["alice"], ["carol"])


def test_deleting_a_role_in_the_admin_is_audited(client, root):
    role = RoleFactory(slug="scratch")
    sign_in_verified(client, root)
    assert client.post(f"/admin/broker/role/{role.pk}/delete/", {"post": "yes"}).status_code == 302
    (event,) = changes()
    assert (event.data["operation"], event.role, event.data["object"]) == ("deleted", "scratch", "scratch")


def test_an_admin_cannot_add_a_second_factor_for_someone_else(client, root, requester):
    sign_in_verified(client, root)
    assert client.get("/admin/otp_totp/totpdevice/add/").status_code == 403


# --- Deciding in the admin (finding 5) -----------------------------------------------------------------


@pytest.fixture
def staff_approver(approver):
    approver.is_staff = True
    approver.is_superuser = True
    approver.save()
    return approver


def decide(client, req, action: str):
    return client.post(
        "/admin/approvals/accessrequest/", {"action": action, "_selected_action": [str(req.pk)], "index": "0"}
    )


def test_approve_selected_approves_an_mfa_role_with_the_admins_own_fresh_step_up(client, staff_approver, prod_db):
    req = approvals.request_create(
        requester=prod_db.eligibilities.get().user, role=prod_db, justification="x", via=Channel.API,
        mfa_at=timezone.now(),
    )  # fmt: skip
    sign_in_verified(client, staff_approver)
    assert decide(client, req, "approve").status_code == 302
    req.refresh_from_db()
    assert req.status == "approved"
    assert req.decisions.get().channel == Channel.PORTAL


@pytest.mark.parametrize("action", ["approve", "deny"])
def test_deciding_an_mfa_role_in_the_admin_with_a_stale_step_up_sends_the_admin_to_verify(
    client, staff_approver, prod_db, action
):
    req = approvals.request_create(
        requester=prod_db.eligibilities.get().user, role=prod_db, justification="x", via=Channel.API,
        mfa_at=timezone.now(),
    )  # fmt: skip
    sign_in_verified(client, staff_approver, fresh=False)
    response = decide(client, req, action)
    assert response.status_code == 302
    assert response["Location"].startswith("/account/mfa/verify/")
    req.refresh_from_db()
    assert req.status == "pending" and not req.decisions.exists()


# --- Revoking in the admin asks why (finding 12) -----------------------------------------------------


def test_revoking_grants_in_the_admin_asks_for_a_reason_and_records_it(client, root, active_grant):
    grant = active_grant()
    sign_in_verified(client, root)
    selected = {"action": "revoke", "_selected_action": [str(grant.pk)], "index": "0"}
    form = client.post("/admin/grants/grant/", selected)
    assert form.status_code == 200 and b'name="reason"' in form.content
    blank = client.post("/admin/grants/grant/", {**selected, "apply": "Revoke now", "reason": "  "})
    assert b"Say why" in blank.content
    grant.refresh_from_db()
    assert grant.status == "active"
    done = client.post("/admin/grants/grant/", {**selected, "apply": "Revoke now", "reason": "left the team"})
    assert done.status_code == 302
    grant.refresh_from_db()
    assert grant.status in ("revoking", "revoked")
    assert AuditEvent.objects.filter(action__startswith="grant.", data__comment="left the team").exists()


def test_removing_someones_device_in_the_admin_is_audited_about_them(client, root, requester):
    device = authenticator(requester)
    sign_in_verified(client, root)
    path = f"/admin/otp_totp/totpdevice/{device.pk}/delete/"
    assert client.post(path, {"post": "yes"}).status_code == 302
    (event,) = changes()
    assert (event.subject, event.data["operation"], event.data["device"]) == ("alice", "deleted", device.persistent_id)


def test_a_role_s_escalation_is_edited_and_audited_in_the_admin(client, root, prod_db, outsider):
    sign_in_verified(client, root)
    data = post_data(client.get(f"/admin/broker/role/{prod_db.pk}/change/"))
    data["escalation_after"] = "02:00:00"
    data["escalation_users"] = [str(outsider.pk)]
    response = client.post(f"/admin/broker/role/{prod_db.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    prod_db.refresh_from_db()
    assert (prod_db.escalation_after, list(prod_db.escalation_users.all())) == (timedelta(hours=2), [outsider])
    (event,) = changes()
    assert event.data["fields"] == ["escalation_after", "escalation_users"]


def test_an_escalation_as_long_as_the_request_ttl_is_refused_in_the_admin(client, root, prod_db):
    sign_in_verified(client, root)
    data = post_data(client.get(f"/admin/broker/role/{prod_db.pk}/change/"))
    data["escalation_after"] = "1 00:00:00"  # the request_ttl: the request would expire first
    response = client.post(f"/admin/broker/role/{prod_db.pk}/change/", data)
    assert response.status_code == 200
    prod_db.refresh_from_db()
    assert prod_db.escalation_after is None


def test_the_latest_drift_report_of_each_target_is_listed_read_only(client, root, prod_db):
    from grants.reconcile import reconcile

    reconcile()
    sign_in_verified(client, root)
    page = client.get("/admin/grants/targetreport/")
    assert page.status_code == 200
    assert "Django group &#x27;prod-db-holders&#x27;" in page.content.decode()
    assert client.get("/admin/grants/targetreport/add/").status_code == 403
