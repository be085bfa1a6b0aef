"""The German catalogue is complete and current, and pages, emails and link pages use it.

When a completeness test fails, it names the strings. To fix: `make messages` (needs GNU gettext:
apt-get install gettext) extracts the new strings into locale/de/LC_MESSAGES/django.po and drops
the gone ones; translate each new entry there (no fuzzy flag left), run `make messages` again to
compile django.mo, and commit both files (docs/translations.md).
"""

from __future__ import annotations

import re
import shutil
from html import unescape
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.core.management import call_command

from accounts.preferences import language_set
from tests.factories import GroupFactory, UserFactory

ROOT = Path(settings.BASE_DIR)
PO = ROOT / "locale" / "de" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
HOW_TO_FIX = (
    "run `make messages` (GNU gettext needed), translate the new entries in "
    "locale/de/LC_MESSAGES/django.po, run `make messages` again to compile django.mo, commit both"
)
# What makemessages reads: the broker's own code and templates (the command's IGNORED list says
# what it leaves out; copying only these keeps the copy small).
SOURCES = ["accounts", "approvals", "broker", "grants", "notifications", "templates"]


def _key(entry: polib.POEntry) -> str:
    return f"[{entry.msgctxt}] {entry.msgid}" if entry.msgctxt else entry.msgid


def _untranslated(entry: polib.POEntry) -> bool:
    if entry.msgid_plural:
        return not entry.msgstr_plural or not all(entry.msgstr_plural.values())
    return not entry.msgstr


def test_every_german_entry_is_translated_and_none_is_fuzzy():
    catalogue = polib.pofile(str(PO))
    missing = [_key(e) for e in catalogue if not e.obsolete and _untranslated(e)]
    fuzzy = [_key(e) for e in catalogue if not e.obsolete and "fuzzy" in e.flags]
    assert not missing, f"{len(missing)} German translations missing: {missing}; {HOW_TO_FIX}"
    assert not fuzzy, f"{len(fuzzy)} German translations marked fuzzy (check and unmark them): {fuzzy}; {HOW_TO_FIX}"


def test_the_placeholders_of_each_translation_match_its_source():
    named = re.compile(r"%\((\w+)\)s")
    wrong = []
    for entry in polib.pofile(str(PO)):
        sources = [entry.msgid, entry.msgid_plural] if entry.msgid_plural else [entry.msgid]
        targets = list(entry.msgstr_plural.values()) if entry.msgid_plural else [entry.msgstr]
        wanted = set().union(*(named.findall(s) for s in sources))
        wrong += [_key(entry) for t in targets if set(named.findall(t)) != wanted]
    assert not wrong, f"translations whose %(name)s placeholders differ from the English: {wrong}"


def test_the_committed_mo_file_is_compiled_from_the_committed_po_file():
    source = {(e.msgctxt, e.msgid): (e.msgstr, e.msgstr_plural) for e in polib.pofile(str(PO)) if e.msgid}
    compiled = {(e.msgctxt, e.msgid): (e.msgstr, e.msgstr_plural) for e in polib.mofile(str(MO)) if e.msgid}
    stale = sorted(f"{k[1]!r}" for k in source.keys() ^ compiled.keys())
    stale += sorted(f"{k[1]!r}" for k in source.keys() & compiled.keys() if source[k] != compiled[k])
    assert not stale, f"django.mo is out of date with django.po for {stale}; run `make messages` and commit django.mo"


@pytest.mark.skipif(not shutil.which("xgettext"), reason="makemessages needs GNU gettext (apt-get install gettext)")
def test_makemessages_finds_no_string_the_german_catalogue_lacks(tmp_path, monkeypatch, settings):
    """Run the project's makemessages on a copy of the code, against a copy of the catalogue."""
    for name in SOURCES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "locale", tmp_path / "locale")
    settings.LOCALE_PATHS = [tmp_path / "locale"]
    monkeypatch.chdir(tmp_path)
    call_command("makemessages", locale=["de"], verbosity=0)
    fresh = {_key(e) for e in polib.pofile(str(tmp_path / "locale" / "de" / "LC_MESSAGES" / "django.po")) if e.msgid}
    committed = {_key(e) for e in polib.pofile(str(PO)) if e.msgid}
    new, gone = sorted(fresh - committed), sorted(committed - fresh)
    assert not new, f"{len(new)} strings in the code are not in the German catalogue: {new}; {HOW_TO_FIX}"
    assert not gone, f"{len(gone)} entries of the German catalogue are no longer in the code: {gone}; {HOW_TO_FIX}"


# --- Pages in German -------------------------------------------------------------------------------


def _english_sentences() -> dict[str, str]:
    """The catalogue's longer English sentences whose German differs: none may show on a German page."""
    sentences = {}
    for entry in polib.pofile(str(PO)):
        if entry.msgid_plural or "%" in entry.msgid or "<" in entry.msgid or len(entry.msgid) < 24:
            continue
        if entry.msgstr and entry.msgstr != entry.msgid:
            sentences[entry.msgid] = entry.msgstr
    return sentences


def _visible_text(html: str) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


@pytest.fixture
def german_auditor(db):
    from broker.catalog import AUDITORS_GROUP

    user = UserFactory(username="greta", is_staff=True)
    user.groups.add(GroupFactory(name=AUDITORS_GROUP))
    language_set(user=user, language="de")
    return user


PAGES = [
    "/",
    "/requests/",
    "/grants/",
    "/approvals/",
    "/approvals/decided/",
    "/account/",
    "/account/tokens/",
    "/account/mfa/enrol/",
    "/audit/",
    "/review/",
    "/review/unused/",
    "/reviews/",
    "/requests/?scope=visible&flagged=1",
    "/this-page-does-not-exist/",
]


@pytest.mark.parametrize("path", PAGES)
def test_each_portal_page_is_german_for_someone_who_chose_german(client, german_auditor, role, request_role, path):
    request_role(role)  # something in the lists, the timelines and the audit log
    client.force_login(german_auditor)
    response = client.get(path)
    assert response.status_code in (200, 404)
    page = response.content.decode()
    assert '<html lang="de">' in page
    assert "Anträge" in page and "Berechtigungen" in page  # the navigation
    text = _visible_text(page)
    left = [english for english in _english_sentences() if english in text]
    assert not left, f"English left on {path}: {left}"


def test_a_request_and_its_timeline_read_in_german(client, german_auditor, role, request_role, requester):
    req = request_role(role)
    client.force_login(german_auditor)
    page = _visible_text(client.get(f"/requests/{req.pk}/").content.decode())
    assert "Verlauf" in page
    assert "alice hat db-admin für 1 h beantragt" in page
    assert "Begründung: incident INC-1" in page
    assert "offen" in page  # the request's state


def test_the_approver_link_page_follows_the_browser_language_before_anyone_signs_in(
    client, role, request_role, approver
):
    from approvals import email_links

    req = request_role(role)
    token = email_links.link_issue(request=req, approver=approver)
    page = client.get(f"/email-link/{token}/", HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9,en;q=0.5").content.decode()
    assert '<html lang="de">' in page
    assert "Zum Entscheiden anmelden" in page
