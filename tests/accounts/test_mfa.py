"""One-time codes: verified against confirmed devices, never twice, throttled after failures."""

from datetime import timedelta

import pytest
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import mfa
from broker.errors import NotAllowed, Throttled
from tests.conftest import T0
from tests.otp import authenticator, code_of, wrong_code_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def device(approver):
    return authenticator(approver)


def test_current_code_verifies(device, approver, clock):
    assert mfa.verify_code(user=approver, code=code_of(device)) == device


def test_the_same_code_is_refused_the_second_time(device, approver, clock):
    code = code_of(device)
    mfa.verify_code(user=approver, code=code)
    with pytest.raises(NotAllowed, match="already used"):
        mfa.verify_code(user=approver, code=code)


def test_wrong_code_is_refused(device, approver, clock):
    wrong = wrong_code_of(device)
    with pytest.raises(NotAllowed) as info:
        mfa.verify_code(user=approver, code=wrong)
    assert info.value.code == "mfa_invalid"


def test_a_failure_throttles_the_next_attempt_until_the_delay_has_passed(device, approver, clock):
    wrong = wrong_code_of(device)
    with pytest.raises(NotAllowed):
        mfa.verify_code(user=approver, code=wrong)
    with pytest.raises(Throttled) as info:
        mfa.verify_code(user=approver, code=code_of(device))
    assert info.value.retry_after >= 1
    clock.shift(timedelta(seconds=info.value.retry_after))
    assert mfa.verify_code(user=approver, code=code_of(device)) == device


def test_unconfirmed_device_does_not_count(approver):
    TOTPDevice.objects.create(user=approver, name="half-enrolled", confirmed=False)
    with pytest.raises(NotAllowed) as info:
        mfa.verify_code(user=approver, code="123456")
    assert info.value.code == "mfa_not_enrolled"
    assert "/account/mfa/" in info.value.detail


def test_a_backup_code_verifies_once(approver):
    static = StaticDevice.objects.create(user=approver, name="backup", confirmed=True)
    StaticToken.objects.create(device=static, token="abcd1234")
    assert mfa.verify_code(user=approver, code="abcd1234") == static
    with pytest.raises(NotAllowed):
        mfa.verify_code(user=approver, code="abcd1234")


def test_missing_code_says_it_is_required(device, approver):
    with pytest.raises(NotAllowed) as info:
        mfa.verify_code(user=approver, code="")
    assert info.value.code == "mfa_required"


@pytest.mark.parametrize(
    ("age", "fresh"),
    [(None, False), (timedelta(0), True), (timedelta(minutes=5), True), (timedelta(minutes=5, seconds=1), False)],
)
def test_step_up_is_fresh_for_five_minutes(age, fresh):
    assert mfa.is_fresh(None if age is None else T0 - age, now=T0) is fresh
