"""Every module Django or DRF imports by a name in the settings loads in a fresh interpreter, imported first.

Import order differs between the server, the worker and each management command, so a circular
import between our settings-named modules and DRF shows up only in some of them. Each case starts a
new Python that imports one of them before anything else, with production settings (DEBUG off).
"""

import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def _named_modules() -> list[str]:
    """The modules behind every dotted path the settings name (the path itself for ROOT_URLCONF)."""
    paths = [settings.CSRF_FAILURE_VIEW, settings.WSGI_APPLICATION]
    for value in settings.REST_FRAMEWORK.values():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, str) and item.startswith("broker."):
                paths.append(item)
    return sorted({path.rpartition(".")[0] for path in paths} | {settings.ROOT_URLCONF})


ENV = {
    "PATH": "/usr/bin:/bin",
    "DJANGO_SETTINGS_MODULE": "broker.settings",
    "SECRET_KEY": "k" * 50,
    "ALLOWED_HOSTS": "localhost",
}


@pytest.mark.parametrize("module", _named_modules())
def test_a_module_the_settings_name_imports_first_in_a_fresh_process(module):
    code = f"import importlib, django; django.setup(); importlib.import_module({module!r})"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_system_checks_pass_with_production_settings():
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
