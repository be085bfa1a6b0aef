"""Django's makemessages with the broker's defaults, so that `make messages` and the completeness
test (tests/broker/test_translations.py) extract the same strings: only the broker's own code and
templates (no virtualenv, tests, benchmarks or scripts), file names without line numbers (a moved
line does not churn the catalogue), no obsolete entries kept.
"""

from __future__ import annotations

from django.core.management.commands import makemessages

# Folders whose strings are not the broker's to translate, relative to the repository's top.
IGNORED = [
    ".venv/*",
    "node_modules/*",
    "tests/*",
    "bench/*",
    "scripts/*",
    "demo/*",
    "deploy/*",
    "docs/*",
    "static/*",
    "var/*",
    "test-artifacts/*",
    "*.egg-info/*",
]


class Command(makemessages.Command):
    def handle(self, *args, **options):
        options["ignore_patterns"] = [*(options.get("ignore_patterns") or []), *IGNORED]
        options["add_location"] = options.get("add_location") or "file"
        options["no_obsolete"] = True
        return super().handle(*args, **options)
