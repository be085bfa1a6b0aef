"""factory_boy factories for the cast of the test suite, and for rows in a given state.

The request, decision and grant factories write rows directly, in the state asked for, for tests
that read them (lists, visibility, query counts, selectors). A test of a change of state calls the
service that makes it instead (approvals.services, grants.services): only those audit and check.
"""

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from approvals.models import AccessRequest, Decision
from broker.models import ApprovalStage, Channel, Eligibility, Role
from grants.models import Grant


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"group{n}")


class RoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Role

    slug = factory.Sequence(lambda n: f"role-{n}")
    name = factory.LazyAttribute(lambda r: f"Role {r.slug}")
    max_duration = timedelta(hours=4)
    default_duration = timedelta(hours=1)
    requires_justification = True
    request_ttl = timedelta(hours=24)
    connector = "django_group"
    connector_config = factory.LazyAttribute(lambda r: {"group": f"{r.slug}-holders"})


class StageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApprovalStage
        skip_postgeneration_save = True

    role = factory.SubFactory(RoleFactory)
    position = 0
    required = 1

    @factory.post_generation
    def users(self, create, extracted, **kwargs):
        if extracted:
            self.users.set(extracted)

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if extracted:
            self.groups.set(extracted)


class EligibilityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Eligibility

    role = factory.SubFactory(RoleFactory)


class AccessRequestFactory(factory.django.DjangoModelFactory):
    """A request by a new user, pending unless told otherwise; a decided one has its decided_at."""

    class Meta:
        model = AccessRequest

    role = factory.SubFactory(RoleFactory)
    requester = factory.SubFactory(UserFactory)
    status = AccessRequest.Status.PENDING
    duration = timedelta(hours=1)
    justification = factory.Sequence(lambda n: f"reason {n}")
    channel = Channel.PORTAL
    created_at = factory.LazyFunction(timezone.now)
    stage_started_at = factory.SelfAttribute("created_at")
    expires_at = factory.LazyAttribute(lambda r: r.created_at + r.role.request_ttl)
    decided_at = factory.LazyAttribute(lambda r: None if r.status == AccessRequest.Status.PENDING else r.created_at)


class DecisionFactory(factory.django.DjangoModelFactory):
    """One approver's verdict, on a request already decided that way (approved or denied)."""

    class Meta:
        model = Decision

    request = factory.SubFactory(
        AccessRequestFactory,
        status=factory.LazyAttribute(
            lambda r: (
                AccessRequest.Status.APPROVED
                if r.factory_parent.verdict == Decision.Verdict.APPROVE
                else AccessRequest.Status.DENIED
            )
        ),
    )
    approver = factory.SubFactory(UserFactory)
    stage = 0
    verdict = Decision.Verdict.APPROVE
    comment = ""
    channel = Channel.PORTAL
    created_at = factory.LazyAttribute(lambda d: d.request.decided_at or timezone.now())


# The end a grant in each state had, when the test does not say.
_END_REASONS = {
    Grant.Status.REVOKING: Grant.EndReason.EXPIRY,
    Grant.Status.REVOKE_FAILED: Grant.EndReason.EXPIRY,
    Grant.Status.EXPIRED: Grant.EndReason.EXPIRY,
    Grant.Status.REVOKED: Grant.EndReason.REVOKED,
    Grant.Status.FAILED: Grant.EndReason.ACTIVATION_FAILED,
}
_ENDED = (Grant.Status.EXPIRED, Grant.Status.REVOKED, Grant.Status.FAILED)
_NEVER_ACTIVATED = (Grant.Status.SCHEDULED, Grant.Status.FAILED)


class GrantFactory(factory.django.DjangoModelFactory):
    """A grant with its approved request: active for an hour from now unless told otherwise.

    The time fields follow the status as the services would leave them: activated unless
    scheduled or failed, an end reason once the end is decided, ended_at once ended.
    """

    class Meta:
        model = Grant

    user = factory.SubFactory(UserFactory)
    role = factory.SubFactory(RoleFactory)
    request = factory.SubFactory(
        AccessRequestFactory,
        requester=factory.SelfAttribute("..user"),
        role=factory.SelfAttribute("..role"),
        status=AccessRequest.Status.APPROVED,
        duration=factory.LazyAttribute(lambda r: r.factory_parent.expires_at - r.factory_parent.starts_at),
        created_at=factory.SelfAttribute("..created_at"),
    )
    status = Grant.Status.ACTIVE
    # An ended grant ran its hour in the past; any other starts now.
    created_at = factory.LazyAttribute(
        lambda g: timezone.now() - (timedelta(hours=2) if g.status in _ENDED else timedelta())
    )
    starts_at = factory.SelfAttribute("created_at")
    expires_at = factory.LazyAttribute(lambda g: g.starts_at + timedelta(hours=1))
    activated_at = factory.LazyAttribute(lambda g: None if g.status in _NEVER_ACTIVATED else g.starts_at)
    end_reason = factory.LazyAttribute(lambda g: _END_REASONS.get(g.status, ""))
    end_requested_at = factory.LazyAttribute(lambda g: g.expires_at if g.end_reason else None)
    ended_at = factory.LazyAttribute(lambda g: g.expires_at if g.status in _ENDED else None)
