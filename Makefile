# gatekeeper — the two commands a new user needs: `make run` and `make test`.
HOST ?= 127.0.0.1
PORT ?= 8000
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck rego-test pytest deps system-deps clean bench

# Serve the demo (demo-reasoner behind gatekeeper, embedded defaults: no Redis, no OPA).
run: $(STAMP)
	$(PY) -m gatekeeper demo --host $(HOST) --port $(PORT)

# Install everything the tests need, then lint, type-check and run every test.
test: deps lint typecheck rego-test pytest

deps: $(STAMP) system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian's redis-server for the quota, identity and sink tests (they start their own instances).
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

lint: $(STAMP)
	$(VENV)/bin/ruff check gatekeeper tests bench examples
	$(VENV)/bin/ruff format --check gatekeeper tests bench examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict gatekeeper

rego-test: $(STAMP)
	$(PY) -m gatekeeper policy test policies

pytest: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
