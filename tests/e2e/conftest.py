"""End-to-end tests: Playwright drives Debian's Chromium (/usr/bin/chromium, headless) against a live server.

No browser is ever downloaded: Playwright launches the system Chromium by path. Without Chromium or
the playwright package these tests are skipped with the reason; CI installs the `chromium` package.
Screenshots of every step go to test-artifacts/screenshots/ (printed at the end of the run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

try:
    import playwright.sync_api  # noqa: F401

    HAVE_PLAYWRIGHT = True
except ImportError:  # pragma: no cover - the test extra installs it
    HAVE_PLAYWRIGHT = False

PASSWORD = "correct horse battery staple"  # the factories' test password
_taken: list[Path] = []


def pytest_collection_modifyitems(config, items):
    reason = None
    if not HAVE_PLAYWRIGHT:
        reason = "the playwright package is not installed (pip install -e '.[test]')"
    elif not CHROMIUM.exists():
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    for item in items:
        if "tests/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter):
    if _taken:
        terminalreporter.write_sep("-", "end-to-end screenshots")
        terminalreporter.write_line(f"{len(_taken)} screenshots in {SCREENSHOTS}")


@pytest.fixture(scope="session")
def screenshots_dir() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; Django would refuse ORM calls from
    # the test body. The calls are ordinary synchronous ones, so allow them for these tests only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Person:
    """One person's browser context: their own cookies, time zone and screen."""

    def __init__(self, browser, base_url: str, name: str, shots: Path, **options):
        self.name = name
        self.base_url = base_url
        self.shots = shots
        self.context = browser.new_context(
            base_url=base_url,
            timezone_id=options.pop("timezone_id", "Europe/Berlin"),
            locale="en-GB",
            viewport=options.pop("viewport", {"width": 1280, "height": 860}),
            **options,
        )
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.csp_violations: list[str] = []
        self.page.on("console", self._console)

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.csp_violations.append(message.text)

    def login(self, username: str, password: str = PASSWORD) -> None:
        self.page.goto("/account/login/")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(f"{self.base_url}/")

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        _taken.append(path)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def person(browser, live_server, screenshots_dir):
    people: list[Person] = []

    def make(name: str, **options) -> Person:
        p = Person(browser, live_server.url, name, screenshots_dir, **options)
        people.append(p)
        return p

    yield make
    for p in people:
        p.close()


# --- axe-core: accessibility rules run inside each page ---------------------------------------------

E2E = Path(__file__).resolve().parent
AXE = E2E / "node_modules" / "axe-core" / "axe.min.js"
# Every rule of WCAG 2.0, 2.1 and 2.2 at levels A and AA (axe tags them so).
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]

_RUN_AXE = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + " — " + (n.failureSummary || "").split("\\n").join(" ")),
  }));
}"""


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, pinned in tests/e2e/package-lock.json; installed with npm ci when missing."""
    if not AXE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is needed to install axe-core for the accessibility tests (apt-get install npm)")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=E2E, check=True, timeout=300)
    return AXE.read_text()


def axe_violations(page, axe_source: str) -> list[dict]:
    """Run axe-core in the page: WCAG 2.0/2.1/2.2 A and AA violations, as short dicts.

    The script goes in through the DevTools protocol (page.evaluate), which the page's
    Content-Security-Policy does not govern: nothing is relaxed for the test (no bypass_csp, no
    inline script tag), so what axe sees is what a person gets.
    """
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source)
    return page.evaluate(_RUN_AXE, WCAG_TAGS)
