# gatekeeper — the two commands a new user needs: `make run` and `make test`.
HOST ?= 127.0.0.1
PORT ?= 8000
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OPA_VERSION := v1.22.3
TOOLS := $(CURDIR)/.tools/bin
# uv installs .venv from uv.lock (every package, direct and transitive, exact versions and
# hashes). uv itself comes pinned with hashes from requirements/uv.txt, into its own venv.
UV_VENV := .tools/uv
UV := $(UV_VENV)/bin/uv
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test lint typecheck rego-test pytest deps system-deps tools clean bench lock

# Serve the demo (demo-reasoner behind gatekeeper, embedded defaults: no Redis, no OPA).
run: $(STAMP)
	$(PY) -m gatekeeper demo --host $(HOST) --port $(PORT)

# Install everything the tests need, then lint, type-check and run every test.
test: deps tools lint typecheck rego-test pytest

deps: $(STAMP) system-deps

# The project's environment, exactly as uv.lock says (all extras: test and bench), rebuilt
# whenever the lock, pyproject.toml or the pinned uv changes. `--locked` fails when
# pyproject.toml was edited without `make lock`, instead of resolving anew behind your back.
$(STAMP): uv.lock pyproject.toml $(UV)
	$(UV) sync --quiet --locked --all-extras --python $(PYTHON)
	touch $(STAMP)

$(UV): requirements/uv.txt
	rm -rf $(UV_VENV)
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/pip install --quiet --require-hashes -r requirements/uv.txt

# Refresh uv.lock on purpose: every dependency to its newest version within pyproject.toml's
# ranges. Commit the new lock with the fixes it needs (`make test` must pass on it).
lock: $(UV)
	$(UV) lock --upgrade --python $(PYTHON)

# Debian's redis-server for the quota, identity and sink tests (they start their own instances).
# Debian's chromium for the test that opens the audit report headless (skipped without it).
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package; opens the audit report in a test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "installing wrk (Debian package; the load generator of bench/ and its smoke test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }

# OPA for the OPA-engine and conformance tests: the one on PATH, or built once with Go into
# .tools/bin (cached there). Without either, those tests are skipped and say why.
tools:
	@if command -v opa >/dev/null 2>&1 || [ -x "$(TOOLS)/opa" ]; then :; \
	elif GO=$$(command -v go || ls /usr/local/go/bin/go 2>/dev/null); [ -n "$$GO" ]; then \
	  echo "building opa $(OPA_VERSION) into .tools/bin with Go (a few minutes, once)"; \
	  GOBIN="$(TOOLS)" $$GO install github.com/open-policy-agent/opa@$(OPA_VERSION); \
	else echo "neither opa nor go found: the OPA engine tests will be skipped"; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check gatekeeper tests bench examples
	$(VENV)/bin/ruff format --check gatekeeper tests bench examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict gatekeeper

rego-test: $(STAMP)
	$(PY) -m gatekeeper policy test policies
	@PATH="$(TOOLS):$$PATH"; if command -v opa >/dev/null 2>&1; then opa test policies; fi

pytest: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# Every benchmark scenario in sequence (docs/performance.md); 10-15 minutes. One scenario:
# $(PY) -m bench.<name> --help. Benchmarks never run in `make test` (only a smoke test does).
bench: $(STAMP) system-deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(UV_VENV) .pytest_cache .mypy_cache .ruff_cache
