from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.enrolment import enrolment_code_issue
from broker.durations import parse_duration
from broker.errors import BrokerError
from broker.models import Channel


class Command(BaseCommand):
    help = (
        "Issue a single-use enrolment code with which USERNAME sets up their first second factor "
        "(MFA_ENROLMENT_CODE_REQUIRED); prints only the code, once (it is stored hashed). Older open codes "
        "of the person stop working."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--expires-in", default=None, help="lifetime such as 3d or 12h (default: MFA_ENROLMENT_CODE_LIFETIME)"
        )

    def handle(self, *args, username, expires_in, **options):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {username!r}")
        try:
            lifetime = parse_duration(expires_in) if expires_in else None
        except ValueError as exc:
            raise CommandError(f"--expires-in: {exc}") from None
        try:
            code = enrolment_code_issue(user=user, actor=None, via=Channel.CLI, lifetime=lifetime)
        except BrokerError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(code)
