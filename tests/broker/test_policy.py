"""Policy as code: full validation with line numbers, idempotent apply, dry run, prune."""

from datetime import timedelta
from textwrap import dedent

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from broker import policy
from broker.models import AuditEvent, Role
from tests.factories import GroupFactory, UserFactory

pytestmark = pytest.mark.django_db

GOOD = dedent(
    """\
    roles:
      - slug: prod-db-admin
        name: Production database admin
        description: Superuser on the production PostgreSQL cluster
        max_duration: 4h
        default_duration: 1h
        min_duration: 5m
        requires_justification: true
        requires_ticket: false
        requires_mfa: true
        break_glass: false
        approval:
          auto_approve: false
          request_ttl: 24h
          stages:
            - approvers: {users: [carol], groups: [dba-leads]}
              required: 1
        target:
          connector: django_group
          config: {group: prod-db-admins}
          authoritative: false
    eligibility:
      - role: prod-db-admin
        users: [alice]
        groups: [dba]
    """
)


@pytest.fixture
def directory(db):
    UserFactory(username="alice")
    UserFactory(username="carol")
    GroupFactory(name="dba-leads")
    GroupFactory(name="dba")


def errors_of(text):
    with pytest.raises(policy.PolicyInvalid) as info:
        policy.load(text)
    return [str(e) for e in info.value.errors]


def test_valid_policy_creates_the_role_with_stages_and_eligibility(directory):
    changes = policy.apply(policy.load(GOOD))
    role = Role.objects.get(slug="prod-db-admin")
    assert (role.max_duration, role.default_duration, role.min_duration) == (
        timedelta(hours=4),
        timedelta(hours=1),
        timedelta(minutes=5),
    )
    assert role.requires_mfa and role.managed_by_policy
    stage = role.stages.get()
    assert list(stage.users.values_list("username", flat=True)) == ["carol"]
    assert list(stage.groups.values_list("name", flat=True)) == ["dba-leads"]
    assert role.eligibilities.count() == 2
    assert Group.objects.filter(name="prod-db-admins").exists()
    assert next(c.kind for c in changes) == "created"


def test_applying_twice_changes_nothing_and_audits_nothing_the_second_time(directory):
    policy.apply(policy.load(GOOD))
    events = AuditEvent.objects.count()
    changes = policy.apply(policy.load(GOOD))
    assert changes == []
    assert AuditEvent.objects.count() == events


def test_apply_is_audited_once_with_the_file_digest(directory):
    loaded = policy.load(GOOD)
    policy.apply(loaded)
    event = AuditEvent.objects.get(action="policy.applied")
    assert event.data["sha256"] == loaded.digest


def test_changed_field_is_reported_and_updated(directory):
    policy.apply(policy.load(GOOD))
    changes = policy.apply(policy.load(GOOD.replace("max_duration: 4h", "max_duration: 2h")))
    assert [str(c) for c in changes] == ["updated   prod-db-admin: max_duration 4h → 2h"]
    assert Role.objects.get().max_duration == timedelta(hours=2)


def test_dry_run_reports_changes_and_writes_nothing(directory):
    changes = policy.apply(policy.load(GOOD), dry_run=True)
    assert changes[0].kind == "created"
    assert not Role.objects.exists()
    assert not AuditEvent.objects.exists()


def test_eligibility_follows_the_file(directory):
    policy.apply(policy.load(GOOD))
    changes = policy.apply(policy.load(GOOD.replace("users: [alice]\n", "users: []\n")))
    assert "eligible -alice" in str(changes)
    assert not Role.objects.get().eligibilities.filter(user__username="alice").exists()


def test_bad_file_reports_every_error_with_its_line_and_changes_nothing(directory):
    text = dedent(
        """\
        roles:
          - slug: Bad_Slug
            name: x
            max_duration: 4 hours
            default_duration: 5h
            requires_mfa: yes please
            approval:
              stages:
                - approvers: {users: [nobody]}
                  required: 2
            target:
              connector: carrier_pigeon
          - slug: ok
            name: ok
            max_duration: 1h
            colour: blue
            approval: {auto_approve: true}
            target: {connector: django_group, config: {}}
        eligibility:
          - role: missing
            users: [alice]
        """
    )
    errors = errors_of(text)
    assert "line 2: roles[0].slug: 'Bad_Slug' must be lowercase letters, digits and hyphens (at most 64)" in errors
    assert (
        "line 4: roles[0].max_duration: expected a duration such as 30m, 4h or 1h30m (units s, m, h, d), got '4 hours'"
        in errors
    )
    assert "line 6: roles[0].requires_mfa: must be true or false, got 'yes please'" in errors
    assert "line 9: roles[0].approval.stages[0].approvers.users[0]: no user 'nobody'" in errors
    assert "line 10: roles[0].approval.stages[0].required: needs 2 approvals but names only 1 user(s)" in errors
    assert any(e.startswith("line 12: roles[0].target.connector: unknown connector 'carrier_pigeon'") for e in errors)
    assert any(e.startswith("line 16: roles[1].colour: unknown key") for e in errors)
    assert any("roles[1].target.config.group: the name of the Django group to manage is required" in e for e in errors)
    assert "line 20: eligibility[0].role: no role 'missing' in this file" in errors
    assert not Role.objects.exists()


def test_default_longer_than_max_is_an_error(directory):
    errors = errors_of(GOOD.replace("default_duration: 1h", "default_duration: 5h"))
    assert errors == ["line 6: roles[0].default_duration: is longer than max_duration"]


def test_unknown_group_is_an_error(directory):
    errors = errors_of(GOOD.replace("groups: [dba]", "groups: [dbas]"))
    assert errors == ["line 25: eligibility[0].groups[0]: no group 'dbas'"]


def test_duplicate_keys_are_an_error_not_a_silent_override(directory):
    errors = errors_of(GOOD.replace("requires_mfa: true", "requires_mfa: true\n    requires_mfa: false"))
    assert errors == ["line 11: roles[0].requires_mfa: duplicate key"]


def test_duplicate_slugs_are_an_error(directory):
    body = GOOD.split("eligibility:")[0]
    role_block = body.split("roles:\n")[1]
    errors = errors_of("roles:\n" + role_block + role_block)
    assert any("duplicate slug 'prod-db-admin'" in e for e in errors)


def test_role_without_stages_and_without_auto_approve_is_an_error(directory):
    text = "roles:\n  - {slug: x, name: x, max_duration: 1h, target: {connector: django_group, config: {group: g}}}\n"
    assert errors_of(text) == [
        "line 2: roles[0].approval: needs at least one stage under approval.stages, or auto_approve: true"
    ]


def test_invalid_yaml_is_reported_with_its_line(directory):
    errors = errors_of("roles:\n  - slug: [unclosed\n")
    assert len(errors) == 1 and errors[0].startswith("line 3: not valid YAML")


def test_empty_file_is_an_error(directory):
    assert errors_of("") == ["the file is empty; expected `roles:` and `eligibility:`"]


def test_role_missing_from_the_file_is_kept_without_prune(directory):
    policy.apply(policy.load(GOOD))
    changes = policy.apply(policy.load("roles: []\n"))
    assert [c.kind for c in changes] == ["kept"]
    assert Role.objects.get().retired_at is None


def test_prune_retires_the_role_and_ends_its_live_grants(directory, active_grant):
    policy.apply(policy.load(GOOD))
    grant = active_grant(target_role=Role.objects.get(slug="prod-db-admin"))
    changes = policy.apply(policy.load("roles: []\n"), prune=True)
    assert "retired" in [c.kind for c in changes]
    grant.refresh_from_db()
    assert (grant.status, grant.end_reason) == ("revoked", "role_retired")


def test_applying_a_policy_that_drops_someone_ends_their_grant_at_once(directory, active_grant, request_role):
    policy.apply(policy.load(GOOD))
    grant = active_grant(target_role=Role.objects.get(slug="prod-db-admin"))
    without_alice = GOOD.replace("    users: [alice]\n", "")
    changes = policy.apply(policy.load(without_alice))
    assert f"ending    prod-db-admin: end grant #{grant.pk} of alice: no longer eligible for the role" in map(
        str, changes
    )
    grant.refresh_from_db()
    assert (grant.status, grant.end_reason, grant.end_comment) == (
        "revoked",
        "eligibility_lost",
        "no longer eligible for the role",
    )
    assert not grant.user.groups.filter(name="prod-db-admins").exists()
    ended = AuditEvent.objects.get(action="grant.revoked", target_id=str(grant.pk))
    assert (ended.channel, ended.data["end_reason"]) == ("cli", "eligibility_lost")


def test_a_dry_run_says_which_grants_a_policy_would_end_and_ends_none(directory, active_grant):
    policy.apply(policy.load(GOOD))
    grant = active_grant(target_role=Role.objects.get(slug="prod-db-admin"))
    changes = policy.apply(policy.load(GOOD.replace("    users: [alice]\n", "")), dry_run=True)
    assert f"ending    prod-db-admin: would end grant #{grant.pk} of alice: no longer eligible for the role" in map(
        str, changes
    )
    grant.refresh_from_db()
    assert grant.status == "active"


def test_applying_a_policy_that_drops_someone_cancels_their_pending_request(directory, request_role):
    policy.apply(policy.load(GOOD))
    req = request_role(Role.objects.get(slug="prod-db-admin"), mfa_at=timezone.now())
    policy.apply(policy.load(GOOD.replace("    users: [alice]\n", "")))
    req.refresh_from_db()
    assert (req.status, req.closed_reason) == ("cancelled", "no longer eligible for the role")
    event = AuditEvent.objects.get(action="request.cancelled", target_id=str(req.pk))
    assert (event.data["end_reason"], event.data["cause"]) == ("eligibility_lost", "policy applied")


def test_a_self_referencing_alias_is_refused_with_its_line_instead_of_recursing_forever(directory):
    errors = errors_of("roles: &roles\n  - *roles\n")
    assert errors == ["line 2: YAML aliases are not allowed (*roles, anchored on line 1); write the value out in full"]


def test_an_alias_bomb_is_refused_as_aliases_without_being_expanded(directory):
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"lol{n}: &lol{n} [{', '.join([f'*lol{n - 1}'] * 9)}]" for n in range(1, 10)]
    errors = errors_of("\n".join(lines) + "\n")
    assert errors == [
        f"line {n + 1}: YAML aliases are not allowed (*lol{n - 1}, anchored on line {n}); write the value out in full"
        for n in range(1, 10)
    ]


def test_a_merge_key_is_refused_like_any_alias(directory):
    text = "defaults: &defaults {max_duration: 1h}\nroles:\n  - <<: *defaults\n    slug: x\n"
    assert errors_of(text) == [
        "line 3: YAML aliases are not allowed (*defaults, anchored on line 1); write the value out in full"
    ]


def test_nesting_deeper_than_any_policy_needs_is_refused_as_invalid_yaml(directory):
    assert errors_of("roles: " + "[" * 500 + "]" * 500 + "\n") == [
        "line 1: not valid YAML: nested more than 50 levels deep"
    ]


@pytest.mark.parametrize(
    ("written", "misspelt", "error"),
    [
        (
            "eligibility:",
            "owner: security\neligibility:",
            "line 22: owner: unknown key (expected one of: eligibility, roles)",
        ),
        (
            "requires_mfa: true",
            "require_mfa: true",
            "line 10: roles[0].require_mfa: unknown key (expected one of: approval, break_glass, conditions, "
            "default_duration, description, max_duration, max_total_duration, min_duration, name, notify, owners, "
            "requires_justification, requires_mfa, requires_ticket, resources, review, slug, target)",
        ),
        (
            "auto_approve: false",
            "auto_aprove: false",
            "line 13: roles[0].approval.auto_aprove: unknown key (expected one of: auto_approve, escalation, request_ttl, stages)",
        ),
        (
            "required: 1",
            "requires: 1",
            "line 17: roles[0].approval.stages[0].requires: unknown key (expected one of: approvers, required)",
        ),
        (
            "{users: [carol],",
            "{user: [carol],",
            "line 16: roles[0].approval.stages[0].approvers.user: unknown key (expected one of: groups, users)",
        ),
        (
            "authoritative: false",
            "authoritive: false",
            "line 21: roles[0].target.authoritive: unknown key (expected one of: authoritative, config, connector)",
        ),
        (
            "groups: [dba]\n",
            "group: [dba]\n",
            "line 25: eligibility[0].group: unknown key (expected one of: groups, recertify, role, users)",
        ),
    ],
)
def test_an_unknown_key_is_named_with_its_line_at_every_level(directory, written, misspelt, error):
    assert errors_of(GOOD.replace(written, misspelt)) == [error]


@pytest.mark.parametrize(
    ("written", "wrong", "error"),
    [
        (
            "requires_mfa: true",
            'requires_mfa: "yes"',
            "line 10: roles[0].requires_mfa: must be true or false, got 'yes'",
        ),
        ("requires_mfa: true", "requires_mfa:", "line 10: roles[0].requires_mfa: must be true or false, got None"),
        (
            "auto_approve: false",
            "auto_approve: 0",
            "line 13: roles[0].approval.auto_approve: must be true or false, got 0",
        ),
        (
            "required: 1",
            "required: true",
            "line 17: roles[0].approval.stages[0].required: must be a whole number from 1 to 20, got True",
        ),
        (
            "required: 1",
            "required: 21",
            "line 17: roles[0].approval.stages[0].required: must be a whole number from 1 to 20, got 21",
        ),
        ("name: Production database admin", "name: 42", "line 3: roles[0].name: must be text, got 42"),
        ("users: [alice]", "users: alice", "line 24: eligibility[0].users: must be a list"),
        (
            "config: {group: prod-db-admins}",
            "config: prod-db-admins",
            "line 20: roles[0].target.config: must be a mapping",
        ),
    ],
)
def test_a_value_of_the_wrong_type_is_named_with_its_line(directory, written, wrong, error):
    assert errors_of(GOOD.replace(written, wrong)) == [error]


def test_every_problem_of_a_file_is_reported_at_once_in_file_order(directory):
    text = (
        GOOD.replace("min_duration: 5m", "min_duration: 2h")
        .replace("requires_mfa: true", 'requires_mfa: "yes"')
        .replace("required: 1", "required: true")
        .replace("connector: django_group", "connector: carrier_pigeon")
        .replace("users: [alice]", "users: [alicia]")
        .replace("eligibility:", "owner: security\neligibility:")
    )
    assert errors_of(text) == [
        "line 7: roles[0].min_duration: is longer than default_duration",
        "line 10: roles[0].requires_mfa: must be true or false, got 'yes'",
        "line 17: roles[0].approval.stages[0].required: must be a whole number from 1 to 20, got True",
        "line 19: roles[0].target.connector: unknown connector 'carrier_pigeon' (known: django_group, ldap_group, postgres_role, webhook)",
        "line 22: owner: unknown key (expected one of: eligibility, roles)",
        "line 25: eligibility[0].users[0]: no user 'alicia'",
    ]


def test_an_empty_entry_in_roles_is_an_error_not_skipped(directory):
    assert errors_of("roles:\n  -\n") == ["line 2: roles[0]: is empty"]


# --- Escalation (approval.escalation, optional) ------------------------------------------------------

ESCALATING = GOOD.replace(
    "      request_ttl: 24h\n",
    "      request_ttl: 24h\n      escalation:\n        after: 6h\n        approvers: {users: [bea]}\n",
)


@pytest.fixture
def bea(directory):
    return UserFactory(username="bea")


def test_a_file_without_escalation_keeps_applying_and_leaves_it_unset(directory):
    policy.apply(policy.load(GOOD))
    role = Role.objects.get(slug="prod-db-admin")
    assert role.escalation_after is None
    assert role.escalation_delay == timedelta(hours=12)
    assert not role.escalation_users.exists() and not role.escalation_groups.exists()


def test_escalation_sets_the_delay_and_the_escalation_approvers(bea):
    changes = policy.apply(policy.load(ESCALATING))
    role = Role.objects.get(slug="prod-db-admin")
    assert role.escalation_after == timedelta(hours=6)
    assert list(role.escalation_users.values_list("username", flat=True)) == ["bea"]
    assert "escalation approvers → users=['bea'] groups=[]" in [c.detail for c in changes]
    assert policy.apply(policy.load(ESCALATING)) == []


def test_removing_escalation_from_the_file_removes_it_from_the_role(bea):
    policy.apply(policy.load(ESCALATING))
    changes = [str(c) for c in policy.apply(policy.load(GOOD))]
    role = Role.objects.get(slug="prod-db-admin")
    assert (role.escalation_after, role.escalation_users.count()) == (None, 0)
    assert any("escalation_after 6h → None" in c for c in changes), changes


def test_escalation_must_come_before_the_request_expires(bea):
    assert errors_of(ESCALATING.replace("after: 6h", "after: 24h")) == [
        "line 16: roles[0].approval.escalation.after: must be shorter than request_ttl, or the request expires first"
    ]


def test_escalation_without_approvers_needs_the_escalation_group_setting(directory, settings):
    text = ESCALATING.replace("        approvers: {users: [bea]}\n", "")
    assert errors_of(text) == [
        "line 16: roles[0].approval.escalation.approvers: names no approvers, and the ESCALATION_GROUP setting is "
        "not set"
    ]
    settings.ESCALATION_GROUP = "duty-managers"
    policy.apply(policy.load(text))
    assert Role.objects.get(slug="prod-db-admin").escalation_after == timedelta(hours=6)


def test_an_unknown_escalation_approver_is_an_error(directory):
    assert errors_of(ESCALATING) == ["line 17: roles[0].approval.escalation.approvers.users[0]: no user 'bea'"]


def test_roles_approved_at_once_cannot_escalate(bea):
    text = ESCALATING.replace("auto_approve: false", "auto_approve: true")
    assert errors_of(text) == [
        "line 16: roles[0].approval.escalation: roles approved at once have no stage to escalate"
    ]


@pytest.mark.parametrize(("bad", "shown"), [("\x05", "0x0005"), ("\udb8b", "0xdb8b")])
def test_a_character_yaml_does_not_allow_is_an_error_with_its_line_not_a_crash(directory, bad, shown):
    # Found by schemathesis through POST policy/plan/: JSON can carry control characters and lone surrogates.
    assert errors_of(GOOD.replace("Superuser", f"Super{bad}user")) == [
        f"line 4: not valid YAML: character {shown} is not allowed"
    ]


# --- Conditions -------------------------------------------------------------------------------------

CONDITIONS = """\
    conditions:
      networks: [10.0.0.0/8, "2001:db8::/32"]
      time_zone: Europe/Berlin
      windows:
        - days: [mon, tue, wed, thu, fri]
          hours: "08:00-18:00"
      max_risk: low
"""


def with_conditions(text: str) -> str:
    return text.replace("    target:\n", CONDITIONS + "    target:\n", 1)


def test_conditions_are_stored_with_the_role(directory):
    policy.apply(policy.load(with_conditions(GOOD)))
    assert Role.objects.get(slug="prod-db-admin").conditions == {
        "networks": ["10.0.0.0/8", "2001:db8::/32"],
        "time_zone": "Europe/Berlin",
        "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "hours": "08:00-18:00"}],
        "max_risk": "low",
    }


def test_a_role_without_conditions_stores_none(directory):
    policy.apply(policy.load(GOOD))
    assert Role.objects.get(slug="prod-db-admin").conditions == {}


def test_changing_a_roles_conditions_is_reported_as_an_update(directory):
    policy.apply(policy.load(GOOD))
    changes = policy.apply(policy.load(with_conditions(GOOD)))
    assert any(c.kind == "updated" and "conditions" in c.detail for c in changes)


@pytest.mark.parametrize(
    ("written", "wrong", "error"),
    [
        (
            "10.0.0.0/8,",
            "10.0.0.300/8,",
            "line 19: roles[0].conditions.networks[0]: '10.0.0.300/8' is not a network such as 10.0.0.0/8 or "
            "2001:db8::/32",
        ),
        (
            "time_zone: Europe/Berlin",
            "time_zone: Europe/Berlim",
            "line 20: roles[0].conditions.time_zone: unknown time zone 'Europe/Berlim' (expected a name such as "
            "Europe/Berlin)",
        ),
        (
            "[mon, tue,",
            "[mon, tues,",
            "line 22: roles[0].conditions.windows[0].days: unknown day 'tues' (expected mon, tue, wed, thu, fri, sat, "
            "sun)",
        ),
        (
            '"08:00-18:00"',
            '"8-18"',
            "line 23: roles[0].conditions.windows[0].hours: expected hours such as '08:00-18:00', got '8-18'",
        ),
        (
            "max_risk: low",
            "max_risk: none",
            "line 24: roles[0].conditions.max_risk: must be one of low, high, got 'none'",
        ),
    ],
)
def test_a_wrong_condition_is_named_with_its_line(directory, written, wrong, error):
    assert errors_of(with_conditions(GOOD).replace(written, wrong)) == [error]


def test_a_posture_condition_needs_the_posture_header_setting(directory, settings):
    settings.DEVICE_POSTURE_HEADER = ""
    text = with_conditions(GOOD).replace("max_risk: low", "posture: [compliant]")
    assert errors_of(text) == [
        "line 24: roles[0].conditions.posture: needs the DEVICE_POSTURE_HEADER setting (no posture signal is read "
        "without it)"
    ]


# --- Resources --------------------------------------------------------------------------------------

RESOURCES = """\
    resources:
      names: [orders, billing]
      patterns: ["team-[a-z]+"]
"""


def with_resources(text: str, group: str = "prod-db-{resource}") -> str:
    return text.replace("    target:\n", RESOURCES + "    target:\n", 1).replace(
        "{group: prod-db-admins}", f'{{group: "{group}"}}'
    )


def test_resources_are_stored_with_the_role(directory):
    policy.apply(policy.load(with_resources(GOOD)))
    assert Role.objects.get(slug="prod-db-admin").resources == {
        "names": ["orders", "billing"],
        "patterns": ["team-[a-z]+"],
    }


def test_applying_prepares_the_target_of_each_named_resource(directory):
    policy.apply(policy.load(with_resources(GOOD)))
    assert set(Group.objects.filter(name__startswith="prod-db-").values_list("name", flat=True)) == {
        "prod-db-orders",
        "prod-db-billing",
    }


def test_a_config_naming_the_resource_needs_the_role_to_declare_resources(directory):
    text = GOOD.replace("{group: prod-db-admins}", '{group: "prod-db-{resource}"}')
    assert errors_of(text) == ["line 20: roles[0].target.config: names {resource}, but the role declares no resources"]


@pytest.mark.parametrize(
    ("written", "wrong", "error"),
    [
        ("names: [orders,", "names: [Orders,", "line 19: roles[0].resources.names[0]: 'Orders' must be lowercase "
         "letters, digits, '.', '_' and '-' (at most 63), starting with a letter or digit"),
        ('["team-[a-z]+"]', '["team-[a-z"]', "line 20: roles[0].resources.patterns[0]: 'team-[a-z' is not a regular "
         "expression: unterminated character set at position 5"),
    ],
)  # fmt: skip
def test_a_wrong_resource_is_named_with_its_line(directory, written, wrong, error):
    assert errors_of(with_resources(GOOD).replace(written, wrong)) == [error]
