#!/usr/bin/env bash
# gatekeeper proxy in front of a local model server.
#
#   examples/proxy/run.sh                      # starts demo-reasoner on :9000 as the upstream
#   UPSTREAM=http://127.0.0.1:8080 examples/proxy/run.sh   # your own server (vLLM, llama.cpp…)
#
# Ports: MODEL_PORT (9000) for the stand-in model server, PROXY_PORT (8000) for the proxy.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The project's interpreter (make run/test build .venv from uv.lock), else the one on PATH.
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
MODEL_PORT=${MODEL_PORT:-9000}
PROXY_PORT=${PROXY_PORT:-8000}
UPSTREAM=${UPSTREAM:-}

# Stop what this script started (its own background jobs), however it ends.
trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT INT TERM

if [ -z "$UPSTREAM" ]; then
  "$PYTHON" -m gatekeeper.offline.demo.model_server --host 127.0.0.1 --port "$MODEL_PORT" \
    --log-level warning &
  UPSTREAM="http://127.0.0.1:$MODEL_PORT"
fi

"$PYTHON" -m gatekeeper proxy --upstream "$UPSTREAM" \
  --config examples/proxy/gatekeeper.toml --port "$PROXY_PORT" &

wait -n   # if either process exits, stop the other
