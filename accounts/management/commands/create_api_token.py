from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.tokens import DEFAULT_SCOPES, token_create
from broker.durations import parse_duration
from broker.errors import Invalid


class Command(BaseCommand):
    help = "Create a personal API token for USERNAME and print it (only the token, once; it is stored hashed)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--scopes", default=",".join(DEFAULT_SCOPES), help="comma-separated: read,request,approve,admin"
        )
        parser.add_argument("--expires-in", default=None, help="lifetime such as 30d or 12h (default: no expiry)")
        parser.add_argument("--name", default="", help="a label to recognise the token by")

    def handle(self, *args, username, scopes, expires_in, name, **options):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {username!r}")
        try:
            lifetime = parse_duration(expires_in) if expires_in else None
        except ValueError as exc:
            raise CommandError(f"--expires-in: {exc}") from None
        try:
            _, text = token_create(user=user, scopes=scopes, expires_in=lifetime, name=name, via="cli")
        except Invalid as exc:
            raise CommandError(exc.detail) from None
        # Only the token on stdout, so that TOKEN=$(python manage.py create_api_token alice) works.
        self.stdout.write(text)
