"""A real HTTP receiver on 127.0.0.1 for webhook tests: scripted answers, every request recorded."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers POSTs with the next status of `statuses` (then 200), after `delay` seconds.

    POSTs to /status answer from `granted` ({"type": "access.query"}) and `holders`.
    """

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    granted: dict[str, bool] = field(default_factory=dict)
    acts: bool = True  # False: answers 2xx and does nothing
    received: list[Received] = field(default_factory=list)

    def __post_init__(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/status"):
                    query = json.loads(body)
                    if query["type"] == "access.holders":
                        answer = {"holders": sorted(u for u, on in receiver.granted.items() if on)}
                    else:
                        answer = {"granted": receiver.granted.get(query["user"], False)}
                    return self._answer(200, answer)
                receiver.received.append(Received(self.path, dict(self.headers), body))
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status < 300 and receiver.acts:
                    event = json.loads(body)
                    receiver.granted[event["user"]] = event["type"] == "grant.activated"
                self._answer(status, {"ok": status < 300})

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the broker gave up waiting

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/access"

    @property
    def status_url(self) -> str:
        return self.url.replace("/hooks/access", "/status")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
