"""Start the test identity provider as its own process and drive it like an administrator would."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "idp password for tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class IdP:
    def __init__(self, directory: Path, redirect_uri: str):
        self.dir = directory
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.base}/o"
        self.client_id = "access-broker"
        self.client_secret = secrets.token_urlsafe(24)
        self.control_key = secrets.token_urlsafe(16)
        self.redirect_uri = redirect_uri
        self.proc: subprocess.Popen | None = None

    def start(self) -> IdP:
        env = {
            **os.environ,
            "IDP_DIR": str(self.dir),
            "IDP_PORT": str(self.port),
            "IDP_SECRET_KEY": secrets.token_urlsafe(40),
            "IDP_CONTROL_KEY": self.control_key,
            "IDP_CLIENT_ID": self.client_id,
            "IDP_CLIENT_SECRET": self.client_secret,
            "IDP_REDIRECT_URI": self.redirect_uri,
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.pop("DATABASE_URL", None)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "idp.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.idp"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the test IdP exited:\n{self.log.read_text()}")
            try:
                if requests.get(f"{self.base}/ping", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the test IdP did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def _control(self, what: str, **data) -> dict:
        response = requests.post(
            f"{self.base}/control/{what}", json=data, headers={"X-Control-Key": self.control_key}, timeout=10
        )
        response.raise_for_status()
        return response.json()

    def person(self, username: str, *, password: str = PASSWORD, **data) -> None:
        """Create or update a person at the IdP (groups, email, amr, acr, auth_age)."""
        self._control("person", username=username, password=password, **data)

    def fault(self, kind: str) -> None:
        """The next ID token: tampered, wrong_audience, wrong_nonce or expired."""
        self._control("fault", fault=kind)

    def mint(self, **claims) -> str:
        """A JWT access token signed with the provider's key (for the API's bearer authentication)."""
        return self._control("mint", claims=claims)["token"]

    def allow_redirect(self, uri: str) -> None:
        self._control("redirect-uri", uri=uri)

    def authorize(self, authorize_url: str, username: str, *, password: str = PASSWORD,
                  browser: requests.Session | None = None) -> tuple[str, requests.Session]:  # fmt: skip
        """What a person's browser does at the IdP: open the authorization URL, sign in if asked,
        and come back with the redirect to the broker (its URL is returned, not followed)."""
        browser = browser or requests.Session()
        url = authorize_url
        for _ in range(6):
            response = browser.get(url, allow_redirects=False, timeout=10)
            if response.status_code in (301, 302, 303):
                location = urljoin(url, response.headers["Location"])
                if not location.startswith(self.base):
                    return location, browser
                url = location
                continue
            if response.status_code == 200 and 'name="password"' in response.text:
                token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text).group(1)
                next_url = parse_qs(urlsplit(url).query).get("next", [""])[0]
                response = browser.post(
                    url,
                    data={"csrfmiddlewaretoken": token, "username": username, "password": password, "next": next_url},
                    headers={"Referer": url},
                    allow_redirects=False,
                    timeout=10,
                )
                if response.status_code != 302:
                    raise AssertionError(f"sign-in at the IdP failed: {response.status_code}")
                url = urljoin(url, response.headers["Location"])
                continue
            raise AssertionError(
                f"unexpected answer from the IdP at {url}: {response.status_code}\n{response.text[:500]}"
            )
        raise AssertionError("too many redirects at the IdP")
