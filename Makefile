# Everyday commands. `make help` lists them.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Tools from the npm registry (package.json, pinned in package-lock.json): Redocly CLI lints the schema.
NODE_STAMP := node_modules/.installed
REDOCLY := REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true node_modules/.bin/redocly

.DEFAULT_GOAL := help
.PHONY: help run test test-unit e2e fuzz screenshots lint format clean openapi prod-check bench messages

help: ## list the commands
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the schema linter (apt-get install nodejs npm)"; exit 2; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

run: export DEBUG := 1
run: $(STAMP) ## set up everything and run the broker (portal, API, worker, scheduler) with demo data
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py runstack

# Unit tests on two processes; then, alone on the machine so that timings hold, the browser tests and
# (when DATABASE_URL and CELERY_BROKER_URL are set) the integration tests with a real worker.
UNIT := -n 2 --ignore=tests/integration --ignore=tests/e2e
test: $(STAMP) ## run the whole test suite (integration tests too when DATABASE_URL and CELERY_BROKER_URL are set)
	$(PY) -m pytest $(UNIT)
	$(PY) -m pytest tests/integration tests/e2e

test-unit: $(STAMP) ## only the unit tests (about half a minute)
	$(PY) -m pytest $(UNIT)

# schemathesis with a fresh random seed and a larger budget (CI pins its seed: see .ci/run).
fuzz: $(STAMP) ## fuzz the API with schemathesis, random seed, 100 examples (needs DATABASE_URL and CELERY_BROKER_URL)
	@test -n "$$DATABASE_URL" -a -n "$$CELERY_BROKER_URL" || { echo "set DATABASE_URL and CELERY_BROKER_URL (see README)"; exit 2; }
	env -u SCHEMATHESIS_SEED SCHEMATHESIS_MAX_EXAMPLES=$${SCHEMATHESIS_MAX_EXAMPLES:-100} $(PY) -m pytest tests/integration/test_schemathesis.py

prod-check: $(STAMP) ## start gunicorn + worker + beat as in production (DEBUG off) on DATABASE_URL and CELERY_BROKER_URL, run the lifecycle, stop
	$(PY) scripts/prod_check.py

e2e: $(STAMP) ## only the browser tests (Playwright + /usr/bin/chromium); screenshots in test-artifacts/screenshots/
	$(PY) -m pytest tests/e2e

screenshots: e2e ## refresh the README's portal screenshots (docs/screenshots/) from the browser tests
	mkdir -p docs/screenshots
	cp test-artifacts/screenshots/05-approver-decision.png docs/screenshots/approver-decision.png
	cp test-artifacts/screenshots/07-requester-grant-active.png docs/screenshots/requester-home.png
	cp test-artifacts/screenshots/11-auditor-audit-log.png docs/screenshots/auditor-audit-log.png

# Each benchmark makes and drops its own scratch database (BENCH_DATABASE_URL) and empties a Redis
# database of its own (BENCH_REDIS_URL, default db 7); `bench/run.py NAME --help` for one alone.
BENCHES := revocation check autoapprove audit memory scale anomaly
bench: $(STAMP) ## run every benchmark and print their tables (PostgreSQL, Redis and wrk needed; about 40 minutes)
	@command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 2; }
	@for name in $(BENCHES); do echo "== $$name"; $(PY) bench/run.py $$name || exit 1; done

lint: $(STAMP) $(NODE_STAMP) ## ruff, formatting, one-way dependencies (import-linter), missing migrations, the OpenAPI schema (Redocly)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run
	$(REDOCLY) lint --config redocly.yaml docs/openapi.yaml

openapi: $(STAMP) ## regenerate docs/openapi.yaml from the code (a test fails when it is out of date)
	DEBUG=1 $(PY) manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

# The German catalogue (and any other under locale/): new strings in, gone strings out, then the
# compiled .mo files, which are committed so that running the broker needs no gettext tools.
messages: $(STAMP) ## refresh locale/*/django.po from the code and compile the .mo files (needs GNU gettext)
	@command -v xgettext >/dev/null || { echo "GNU gettext is needed: apt-get install gettext"; exit 2; }
	DEBUG=1 $(PY) manage.py makemessages --all
	DEBUG=1 $(PY) manage.py compilemessages --ignore '.venv/*' --ignore 'node_modules/*' --ignore 'tests/*'

format: $(STAMP) ## format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: ## remove the virtual environment, the npm tools and local data (var/)
	rm -rf $(VENV) node_modules tests/e2e/node_modules var
