"""The modules REST_FRAMEWORK's settings name load first in a fresh process, and the checks pass.

DRF imports the classes its settings name while ``rest_framework.views`` or ``.generics`` is still
loading (the class attributes of APIView and GenericAPIView read them). So a module of ours named
there must not import DRF's views or generic views, nor anything that does: that is a circular
import, and whether it breaks depends on what the process imports first, which differs between the
server, the worker and each management command. import-linter (``make lint``) checks our own
layers but cannot see this edge, which runs through DRF's settings. Two fresh interpreters with
production settings (DEBUG off) cover both orders.
"""

import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]

ENV = {
    "PATH": "/usr/bin:/bin",
    "DJANGO_SETTINGS_MODULE": "broker.settings",
    "SECRET_KEY": "k" * 50,
    "AUDIT_KEY": "a" * 40,
    "ALLOWED_HOSTS": "localhost",
}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True)


def our_modules_named_in_rest_framework_settings() -> list[str]:
    """accounts.authentication, broker.api.parsers, ...: the modules behind our dotted paths there."""
    paths = []
    for value in settings.REST_FRAMEWORK.values():
        paths += [item for item in (value if isinstance(value, list | tuple) else [value]) if isinstance(item, str)]
    modules = {path.rpartition(".")[0] for path in paths if (ROOT / path.partition(".")[0]).is_dir()}
    return sorted(modules)


def test_the_modules_rest_framework_settings_name_load_before_drf_views():
    modules = our_modules_named_in_rest_framework_settings()
    assert "broker.api.parsers" in modules and "accounts.authentication" in modules, modules
    # The first of them that pulls in DRF's views fails: DRF then asks for a class of a module
    # that is still half loaded.
    code = (
        "import importlib, sys, django\n"
        "django.setup()\n"
        "assert 'rest_framework.views' not in sys.modules, 'setup loaded DRF views already: nothing is tested'\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
    )
    result = run("-c", code)
    assert result.returncode == 0, result.stderr[-2000:]


def test_system_checks_pass_with_production_settings():
    # The other order: the checks load the URLs, so the views, and DRF's settings, first.
    result = run("manage.py", "check")
    assert result.returncode == 0, result.stderr[-2000:]
