#!/usr/bin/env bash
# Two uvicorn processes serving the demo app behind gatekeeper, sharing one Redis.
#
#   REDIS_URL=redis://127.0.0.1:6379/0 examples/multi_replica/run.sh
#
# Ports: PORT_A (8001) and PORT_B (8002). Put any load balancer in front of both.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The project's interpreter (make run/test build .venv from uv.lock), else the one on PATH.
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
PORT_A=${PORT_A:-8001}
PORT_B=${PORT_B:-8002}
HERE=examples/multi_replica
LOG_DIR=${LOG_DIR:-$HERE/var}   # one decision log per replica, under LOG_DIR/replica-PORT/

trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT INT TERM

export GATEKEEPER_CONFIG=$HERE/gatekeeper.toml
export GATEKEEPER_QUOTA__STORAGE=$REDIS_URL
for port in "$PORT_A" "$PORT_B"; do
  # --no-proxy-headers: gatekeeper reads X-Forwarded-For itself, from network.trusted_proxies.
  GATEKEEPER_AUDIT__PATH=$LOG_DIR/replica-$port/decisions.jsonl \
    "$PYTHON" -m uvicorn --factory gatekeeper.offline.demo.app:create_demo_app \
    --host 127.0.0.1 --port "$port" --no-proxy-headers --log-level warning &
done

wait -n
