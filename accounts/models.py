"""Personal API tokens: the credential automation uses instead of a session. Services in tokens.py."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    class Scope(models.TextChoices):
        READ = "read"
        REQUEST = "request"
        APPROVE = "approve"
        ADMIN = "admin"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, db_index=True)
    digest = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Moved here from the broker app with its table (migrations broker/0002, accounts/0001).
        db_table = "broker_apitoken"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class CredentialState(models.Model):
    """Per person, what risk signals changed about their credentials (a row only once one did).

    ``session_epoch``: every session remembers the epoch it was signed in at; raising it ends all of
    the person's sessions at their next request, whatever the session backend (accounts/sessions.py).
    ``password_revoked_at``: a ``credential_compromised`` signal made the password unusable; the
    person may still set a new one through the password reset (accounts/recovery.py).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="credential_state"
    )
    session_epoch = models.PositiveIntegerField(default=0)
    sessions_ended_at = models.DateTimeField(null=True, blank=True)
    password_revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"credentials of {self.user} (epoch {self.session_epoch})"


class EnrolmentCode(models.Model):
    """A single-use code an administrator gives a person to set up their first second factor.

    Stored only as a keyed hash (like API tokens); expires; issuing a new one withdraws the older
    ones (accounts/enrolment.py).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrolment_codes")
    digest = models.CharField(max_length=64, unique=True)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "used_at"], name="enrolment_code_open")]

    def __str__(self) -> str:
        return f"enrolment code for {self.user} ({self.created_at:%Y-%m-%d %H:%M})"


class ExternalIdentity(models.Model):
    """The link between a local account and the company's identity provider (accounts/identity.py).

    ``subject`` is the provider's stable identifier (OIDC_SUBJECT_CLAIM, ``sub`` by default) and the
    key a sign-in looks for: never the email or the username, which people and admins can change.
    A person the IdP provisioned over SCIM has no subject until their first sign-in; they are found
    by ``external_id`` (SCIM's ``externalId``, when it carries the same value) or by username, and
    linked then. ``deleted_at``: the IdP deleted the person over SCIM; the account stays (requests
    and grants keep it), deactivated, and SCIM no longer sees it.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identity")
    issuer = models.CharField(max_length=255, blank=True)
    subject = models.CharField(max_length=255, null=True, blank=True)
    external_id = models.CharField(max_length=255, null=True, blank=True)
    provisioned_by_scim = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "external identities"
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "subject"], condition=models.Q(subject__isnull=False), name="identity_unique_subject"
            ),
            models.UniqueConstraint(
                fields=["external_id"],
                condition=models.Q(external_id__isnull=False),
                name="identity_unique_external_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.subject or self.external_id or 'not signed in yet'})"


class Preference(models.Model):
    """How a person wants the broker to show them things, kept on their account (accounts/preferences.py).

    ``time_zone``: the IANA zone their times are shown in, in the portal on every browser and in
    their emails. Empty: the portal follows the browser's zone, and emails use the server's (UTC),
    naming it.

    ``language``: the language of their portal pages and emails (a code of ``settings.LANGUAGES``).
    Empty: the portal follows the browser (Accept-Language), and emails are in the default language.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="preference"
    )
    time_zone = models.CharField(max_length=64, blank=True)
    language = models.CharField(max_length=16, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"preferences of {self.user} ({self.time_zone or 'browser zone'})"
