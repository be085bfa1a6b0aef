"""python -m tests.idp: migrate, register the broker's client, serve on IDP_PORT (threads) until killed."""

import os

import django
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def main() -> None:
    from pathlib import Path

    data = Path(os.environ["IDP_DIR"])
    data.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (data / "signing-key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.idp.settings"
    django.setup()

    from django.core.management import call_command
    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import get_application_model

    call_command("migrate", verbosity=0)
    get_application_model().objects.create(
        name="access broker",
        client_id=os.environ["IDP_CLIENT_ID"],
        client_secret=os.environ["IDP_CLIENT_SECRET"],
        client_type="confidential",
        authorization_grant_type="authorization-code",
        redirect_uris=os.environ["IDP_REDIRECT_URI"],
        algorithm="RS256",
        skip_authorization=True,
    )
    print("idp ready", flush=True)
    run("127.0.0.1", int(os.environ["IDP_PORT"]), get_wsgi_application(), threading=True)


if __name__ == "__main__":
    main()
