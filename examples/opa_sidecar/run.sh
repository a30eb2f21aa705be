#!/usr/bin/env bash
# An OPA server as a sidecar, and the demo app asking it for every decision.
#
#   examples/opa_sidecar/run.sh        # needs `opa` on PATH (make test builds .tools/bin/opa)
#
# Ports: OPA_PORT (8181) for OPA, PORT (8000) for the app. OPA=/path/to/opa to choose a binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The project's interpreter (make run/test build .venv from uv.lock), else the one on PATH.
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OPA=${OPA:-$(command -v opa || echo .tools/bin/opa)}
OPA_PORT=${OPA_PORT:-8181}
PORT=${PORT:-8000}

trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT INT TERM

# Loopback only: the sidecar answers its own pod/host, nobody else.
"$OPA" run --server --addr "127.0.0.1:$OPA_PORT" --log-level error &

"$PYTHON" - "$OPA_PORT" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("OPA did not start")
PY

GATEKEEPER_POLICY__OPA__URL="http://127.0.0.1:$OPA_PORT" \
  "$PYTHON" -m gatekeeper demo --config examples/opa_sidecar/gatekeeper.toml --port "$PORT" &

wait -n
