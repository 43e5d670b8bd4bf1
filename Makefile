# The two commands of the README: `make run` serves on 127.0.0.1:8080, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: running needs the package only; tests and lint need the dev extras too.
INSTALLED := $(VENV)/.installed
INSTALLED_DEV := $(VENV)/.installed-dev
PROFILE := Jsons/user_profile.json
PORT ?= 8080
# This machine only; HOST=0.0.0.0 with TRADING_ORDERS_API_KEY set serves other machines (README).
HOST ?= 127.0.0.1
SCOPE ?= strategy
EXAMPLE_PROFILE := Jsons/worked_example_profile.json

.PHONY: run example test check soak lint bytecode test-unit test-service test-integration test-e2e chromium desk-screenshot demo bench bench-full profile profiles clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip

# setuptools tells every editable install, in ten lines, that a folder named like a package
# (Logs/, the brief's module, installed from where it is) could shadow it: it is that package.
PIP_INSTALL := PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install --quiet --disable-pip-version-check

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(INSTALLED_DEV): $(INSTALLED)
	$(PIP_INSTALL) -e '.[dev]'
	touch $@

# Generated once; delete it (or run `make profiles`) for a new draw.
$(PROFILE): | $(INSTALLED)
	$(BIN)/python Scripts/Generate_User_Profile.py

profiles: $(INSTALLED)
	$(BIN)/python Scripts/Generate_User_Profile.py

# The brief's `cd Scripts && uvicorn Order_Handler:app` serves the same app;
# serve also exits 0 after draining on SIGTERM or Ctrl-C.
run: $(INSTALLED) $(PROFILE)
	$(BIN)/python -m trading_orders serve --host $(HOST) --port $(PORT)

# The README's worked example: the brief's profile, an empty in-memory store on every start,
# so its four orders answer as the README prints them. `make example SCOPE=user` for netting.
example: $(INSTALLED)
	TRADING_ORDERS_PROFILE_PATH=$(EXAMPLE_PROFILE) TRADING_ORDERS_STORE=memory \
		$(BIN)/python -m trading_orders serve --port $(PORT) --scope $(SCOPE)

lint: $(INSTALLED_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The project's own modules compiled once, next to their sources (git ignores
# them): a test run starts about 300 Python processes (services, commands), and
# where PYTHONDONTWRITEBYTECODE is set, as in many container images, each one
# compiled src/ again from source, about 0.07 s of CPU apiece. Python reads
# these files whatever that variable says, and ignores one whose source changed.
bytecode: $(INSTALLED_DEV)
	$(BIN)/python -m compileall -q src Scripts Logs tests

# Tests run in parallel processes, slow ones first (tests/conftest.py); most of
# them wait on a service or database they started, so more workers than cores
# (3 beat 4 once the suite grew: docs/performance.md, the suite's time). Their
# services fork from a process per worker that has imported the libraries
# (tests/support/service_forks.py; TESTS_NO_FORK_SERVER=1 starts each anew):
# 4 workers were then no clearer a win than before.
TEST_WORKERS ?= 3
PARALLEL := -n $(TEST_WORKERS) --dist load --maxschedchunk 2

test: lint bytecode $(PROFILE) chromium
	$(BIN)/pytest $(PARALLEL) --durations=15

# The edit loop, in seconds: lint, the domain and service tiers, and the store
# contract on the memory store. make test runs everything.
check: lint
	$(BIN)/pytest -q tests/unit tests/service tests/integration/test_order_store_contract.py -k "not tinydb and not sqlite and not postgres"

# The long crash loops: 20 kill -9 cycles at the default settings on each durable
# store (make test runs 3 per store); docs/guarantees.md has the last result.
SOAK_CYCLES ?= 20
soak: $(INSTALLED_DEV)
	for store in tinydb sqlite postgres; do \
		$(BIN)/python -m tests.reliability.crashloop --cycles $(SOAK_CYCLES) --seed 20261124 --store $$store || exit 1; \
	done

test-unit: $(INSTALLED_DEV)
	$(BIN)/pytest tests/unit

test-service: bytecode
	$(BIN)/pytest $(PARALLEL) tests/service

test-integration: bytecode
	$(BIN)/pytest $(PARALLEL) tests/integration

test-e2e: bytecode chromium
	$(BIN)/pytest $(PARALLEL) tests/e2e

# The desk's browser tests drive Debian's chromium (Playwright's own browser
# download cannot be used): installed from apt when missing, with sudo when not root.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		as_root=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$as_root apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$as_root apt-get install -y -qq chromium >/dev/null; }

# docs/desk.png, the README's picture of the desk, from a real service and browser.
desk-screenshot: $(INSTALLED_DEV) chromium
	$(BIN)/python -m tests.support.desk_screenshot docs/desk.png

# Benchmarks print tables and are not part of make test; the time left goes to stderr.
# make bench: the headline the README and docs/performance.md quote, about 2 minutes.
# make bench-full: every store, data set and worker count, and the order log's paging, about 20 minutes.
bench: $(INSTALLED)
	$(BIN)/python -m tests.bench.service_load

bench-full: $(INSTALLED)
	$(BIN)/python -m tests.bench.service_load --full
	$(BIN)/python -m tests.bench.order_log_pages

# Where the time goes under load (needs wrk; installs the py-spy profiler into the venv).
profile: $(INSTALLED)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check py-spy
	$(BIN)/python -m tests.bench.profile_service

demo: $(INSTALLED) $(PROFILE)
	$(BIN)/python -m tests.support.demo --project-root .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis .import_linter_cache src/*.egg-info
	find src Scripts Logs tests -name __pycache__ -type d -prune -exec rm -rf {} +
