"""Every dotted path Django or DRF imports by name loads in a fresh interpreter, whatever comes first.

Import order differs between the server, the worker and each management command, so a circular
import between our settings-named modules and DRF shows up only in some of them. Each case starts a
new Python that imports one path first, with production settings (DEBUG off).
"""

import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def _named_paths() -> list[str]:
    drf = settings.REST_FRAMEWORK
    paths = [settings.CSRF_FAILURE_VIEW, settings.ROOT_URLCONF, settings.WSGI_APPLICATION]
    for value in drf.values():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, str) and item.startswith("broker."):
                paths.append(item)
    return sorted(set(paths))


@pytest.mark.parametrize("dotted", _named_paths())
def test_a_settings_named_path_imports_first_in_a_fresh_process(dotted):
    module, _, attr = dotted.rpartition(".")
    code = (
        "import importlib, django; django.setup();"
        f"m = importlib.import_module({dotted!r}) if {dotted!r} == {settings.ROOT_URLCONF!r} else None;"
        f"m = m or getattr(importlib.import_module({module!r}), {attr!r})"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "broker.settings",
        "SECRET_KEY": "k" * 50,
        "ALLOWED_HOSTS": "localhost",
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_system_checks_pass_with_production_settings():
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "broker.settings",
        "SECRET_KEY": "k" * 50,
        "ALLOWED_HOSTS": "localhost",
    }
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
