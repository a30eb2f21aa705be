#!/usr/bin/env bash
# One uvicorn server with several workers serving the demo app behind gatekeeper, on one Redis.
#
#   REDIS_URL=redis://127.0.0.1:6379/0 examples/workers/run.sh
#
# PORT (8000) and WORKERS (4). See README.md beside this file.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The project's interpreter (make run/test build .venv from uv.lock), else the one on PATH.
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
PORT=${PORT:-8000}
WORKERS=${WORKERS:-4}
HERE=examples/workers

export GATEKEEPER_CONFIG=$HERE/gatekeeper.toml
export GATEKEEPER_QUOTA__STORAGE=$REDIS_URL
# Metrics snapshots belong to one server: start with an empty directory.
METRICS_DIR=${GATEKEEPER_OBSERVABILITY__MULTIPROCESS_DIR:-$HERE/var/metrics}
rm -rf "$METRICS_DIR"
mkdir -p "$METRICS_DIR"
export GATEKEEPER_OBSERVABILITY__MULTIPROCESS_DIR=$METRICS_DIR

# --no-proxy-headers: gatekeeper reads X-Forwarded-For itself, from network.trusted_proxies.
exec "$PYTHON" -m uvicorn --factory gatekeeper.offline.demo.app:create_demo_app \
  --host 127.0.0.1 --port "$PORT" --workers "$WORKERS" --no-proxy-headers --log-level warning
