"""A real OpenID Connect provider for the tests: a small Django project with django-oauth-toolkit.

It runs as its own process on a spare loopback port (``IdP.start()``; the ``idp`` fixture in
tests/conftest.py), with its own SQLite database, an RSA signing key made at start, one registered
client (confidential, authorization code with PKCE required, consent skipped) and a plain sign-in
form. ID tokens carry ``preferred_username``, ``email``, ``groups`` (the person's groups at the
provider), ``auth_time`` (their last sign-in there) and, per person, ``amr`` and ``acr``.

A test drives it like an administrator drives a real IdP, over HTTP (``/control/...``, loopback
only, with a shared key): people and their groups, and faults for the next ID token (a tampered
signature, another audience, another nonce, an expired token), so that the broker's checks are
proven against tokens a real provider signed.
"""
