"""A small receiver for the webhook connector: verifies each event's signature and prints it.

`make run` starts it beside the broker for the demo's webhook role; it also shows a team what its
own receiver has to do (docs/connectors.md): check the HMAC over the timestamp and the raw body,
refuse stale timestamps, drop repeated idempotency keys, answer 2xx once the work is done.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from grants.connectors.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

MAX_BODY = 64 * 1024


class Command(BaseCommand):
    help = "Receive the broker's webhook events on ADDR:PORT, verify their signatures and print them."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8089", help="where to listen")
        secret = parser.add_mutually_exclusive_group(required=True)
        secret.add_argument("--secret-file", help="file holding the shared signing key (the role's secret_file)")
        secret.add_argument("--secret-env", help="environment variable holding it (the role's secret_env)")

    def handle(self, *args, addrport, secret_file, secret_env, **options):
        host, _, port = addrport.rpartition(":")
        if not port.isdigit():
            raise CommandError(f"expected ADDR:PORT, got {addrport!r}")
        key = self._secret(secret_file, secret_env)
        out, err = self.stdout, self.stderr
        seen: OrderedDict[str, None] = OrderedDict()
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    return self._answer(413, "too large")
                body = self.rfile.read(length)
                stamp, signature = self.headers.get(TIMESTAMP_HEADER, ""), self.headers.get(SIGNATURE_HEADER, "")
                if not verify(key, stamp, signature, body):
                    err.write(
                        f"webhook receiver: REFUSED a request with a bad or stale signature from {self.client_address[0]}"
                    )
                    return self._answer(401, "bad signature")
                event = json.loads(body)
                idempotency_key = self.headers.get(IDEMPOTENCY_HEADER, "")
                with lock:
                    repeated = idempotency_key in seen
                    seen[idempotency_key] = None
                    while len(seen) > 10_000:
                        seen.popitem(last=False)
                if repeated:
                    out.write(f"webhook receiver: (repeat of {idempotency_key}, already done)")
                else:
                    out.write(
                        f"webhook receiver: verified {event.get('type')}: {event.get('user')} / {event.get('role')}"
                        f" (grant {event.get('grant')}, until {event.get('expires_at')}"
                        f"{', ' + event['end_reason'] if event.get('end_reason') else ''}) key {idempotency_key}"
                    )
                self._answer(200, "ok")

            def _answer(self, status: int, text: str) -> None:
                data = json.dumps({"result": text}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format, *args):
                pass

        try:
            server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        except OSError as exc:
            raise CommandError(f"cannot listen on {addrport}: {exc.strerror}") from None
        self.stdout.write(f"webhook receiver: listening on http://{addrport}/ (verifying signatures)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

    @staticmethod
    def _secret(secret_file: str | None, secret_env: str | None) -> str:
        if secret_env:
            value = os.environ.get(secret_env, "")
            if not value:
                raise CommandError(f"the environment variable {secret_env} is not set")
            return value
        try:
            value = Path(secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CommandError(f"cannot read {secret_file}: {exc.strerror}") from None
        if not value:
            raise CommandError(f"{secret_file} is empty")
        return value
