"""The demo's real targets: a PostgreSQL role on the local server, and the webhook receiver's secret.

Used by `seed_demo` (which prepares them) and `runstack` (which passes them to the worker and starts
the receiver). Nothing here is used outside the demo.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings

# demo/policy.yaml names these: the webhook role's `secret_file` and `url`, the database role's
# `dsn_env`, `role` and `login` rule.
WEBHOOK_SECRET_FILE = Path(settings.BASE_DIR) / "var" / "demo-webhook-secret"
WEBHOOK_RECEIVER = "127.0.0.1:8089"
PG_DSN_ENV = "DEMO_TARGET_PG_DSN"
PG_ROLE = "demo_reporting"
PG_LOGIN = "demo_{username}"


def webhook_secret() -> Path:
    """The shared signing key of the demo's webhook role, made once (a file only this user reads)."""
    if not WEBHOOK_SECRET_FILE.exists():
        WEBHOOK_SECRET_FILE.parent.mkdir(parents=True, exist_ok=True)
        WEBHOOK_SECRET_FILE.write_text(secrets.token_hex(32))
        WEBHOOK_SECRET_FILE.chmod(0o600)
    return WEBHOOK_SECRET_FILE


def postgres_dsn() -> str | None:
    """A libpq connection string for the broker's own PostgreSQL server, or None on SQLite."""
    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        return None
    from psycopg.conninfo import make_conninfo

    parts = {"host": db.get("HOST") or "localhost", "port": db.get("PORT") or 5432, "dbname": db["NAME"]}
    parts |= {k: v for k, v in (("user", db.get("USER")), ("password", db.get("PASSWORD"))) if v}
    return make_conninfo(**parts)


def prepare_postgres(dsn: str, passwords: dict[str, str]) -> list[str]:
    """Create the demo's target role and one login per user (with the given passwords), if missing."""
    import psycopg
    from psycopg import sql

    logins = []
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        exists = "SELECT 1 FROM pg_roles WHERE rolname = %s"
        if not conn.execute(exists, [PG_ROLE]).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(PG_ROLE)))
        for username, password in passwords.items():
            login = PG_LOGIN.replace("{username}", username)
            verb = "ALTER" if conn.execute(exists, [login]).fetchone() else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(login), sql.Literal(password))
            )
            logins.append(login)
    return logins
