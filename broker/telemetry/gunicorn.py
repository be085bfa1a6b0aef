"""gunicorn's logger for the broker (``logger_class`` in gunicorn.conf.py).

The access log line gets the client address by the broker's trusted-proxy rule
(``TRUSTED_PROXY_COUNT``, as ``broker.http.client_ip``), the request id the broker echoed, and
never a credential: paths are redacted like every log line (approver links and password-reset
links carry their token in the path) and query strings are left out of the text format. With
``LOG_FORMAT=json`` both gunicorn logs are JSON lines, like the application's.
"""

from __future__ import annotations

import logging
import os

from gunicorn import glogging

from broker.telemetry.logs import JsonFormatter, TextFormatter, redact


def _json() -> bool:
    return os.environ.get("LOG_FORMAT", "text").strip().lower() == "json"


def client_address(environ: dict) -> str:
    """The address the nearest trusted proxy saw, or the peer's: the rule of broker.http.client_ip."""
    try:
        hops = int(os.environ.get("TRUSTED_PROXY_COUNT", "0") or 0)
    except ValueError:
        hops = 0
    if hops:
        forwarded = [p.strip() for p in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return environ.get("REMOTE_ADDR", "-")


class Logger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False):
                    if _json():
                        handler.setFormatter(JsonFormatter())
                    elif log is self.error_log:
                        handler.setFormatter(TextFormatter())

    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        for key, value in list(atoms.items()):
            if isinstance(value, str):  # the request line, path, query, referer, headers, environ
                atoms[key] = redact(value)
        atoms["client"] = client_address(environ)
        return atoms

    def access(self, resp, req, environ, request_time) -> None:
        if not _json():
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return None
        atoms = self.atoms(resp, req, environ, request_time)
        status = atoms["s"]
        fields = {
            "method": atoms["m"],
            "path": atoms["U"],
            "status": int(status) if str(status).isdigit() else status,
            "bytes": atoms["B"],
            "duration_ms": atoms["M"],
            "client": atoms["client"],
            "peer": atoms["h"],
            "user_agent": redact(atoms["a"])[:300],
            "request_id": atoms.get("{x-request-id}o"),
        }
        try:
            self.access_log.log(logging.INFO, "%s %s %s", fields["method"], fields["path"], status, extra=fields)
        except Exception:  # noqa: BLE001 - never let a log line break a response
            self.error("access log line failed", exc_info=True)
        return None
