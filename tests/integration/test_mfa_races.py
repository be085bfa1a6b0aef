"""Second factors and email links under real concurrency (PostgreSQL, two connections at once)."""

import pytest
from django.utils import timezone
from django_otp.models import Device

from accounts import mfa
from approvals import email_links
from approvals import services as approvals
from approvals.models import ApprovalLink
from broker.errors import BrokerError, NotAllowed
from broker.models import AuditEvent, Channel
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory
from tests.integration.test_races import run_together
from tests.otp import authenticator, code_of

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_same_totp_code_verified_twice_at_once_succeeds_exactly_once(transactional_db):
    carol = UserFactory(username="carol")
    device = authenticator(carol)
    code = code_of(device)

    outcomes = run_together(*[lambda: mfa.verify_code(user=carol, code=code)] * 2)

    assert sum(isinstance(o, Device) for o in outcomes) == 1, outcomes
    refused = [o for o in outcomes if not isinstance(o, Device)]
    assert isinstance(refused[0], NotAllowed) and refused[0].code == "mfa_invalid", refused
    device.refresh_from_db()
    assert device.last_t >= 0


def test_one_email_link_posted_twice_at_once_decides_once(transactional_db):
    alice, carol = UserFactory(username="alice"), UserFactory(username="carol")
    role = RoleFactory(slug="db", requires_mfa=True)
    StageFactory(role=role, users=[carol])
    EligibilityFactory(role=role, user=alice)
    req = approvals.request_create(
        requester=alice, role=role, justification="x", via=Channel.API, mfa_at=timezone.now()
    )
    token = email_links.link_issue(request=req, approver=carol)
    now = timezone.now()

    outcomes = run_together(*[lambda: email_links.link_decide(token=token, user=carol, approve=True, mfa_at=now)] * 2)

    assert sum(not isinstance(o, Exception) for o in outcomes) == 1, outcomes
    assert all(isinstance(o, BrokerError) for o in outcomes if isinstance(o, Exception)), outcomes
    req.refresh_from_db()
    assert req.status == "approved" and req.decisions.count() == 1
    assert ApprovalLink.objects.get().used_for == "approve"
    assert AuditEvent.objects.filter(action="request.approved", channel="email").count() == 1
