#!/usr/bin/env bash
# The JWT example: a development identity provider and the FastAPI app behind gatekeeper.
#
#   examples/jwt_fastapi/run.sh
#   TOKEN=$(curl -s 'localhost:9100/token?sub=alice&tier=enterprise&kyc_level=business')
#   curl -s localhost:8002/v1/chat/completions -H "Authorization: Bearer $TOKEN" ...
#
# Ports: IDP_PORT (9100) for the identity provider, APP_PORT (8002) for the app.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The project's interpreter (make run/test build .venv from uv.lock), else the one on PATH.
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
IDP_PORT=${IDP_PORT:-9100}
APP_PORT=${APP_PORT:-8002}

# Stop what this script started (its own background jobs), however it ends.
trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT INT TERM

"$PYTHON" -m examples.jwt_fastapi.dev_idp --port "$IDP_PORT" &

export GATEKEEPER_IDENTITY__JWT__JWKS_URL="http://127.0.0.1:$IDP_PORT/.well-known/jwks.json"
export GATEKEEPER_IDENTITY__JWT__ISSUER="http://127.0.0.1:$IDP_PORT/"
"$PYTHON" -m uvicorn examples.jwt_fastapi.app:app --port "$APP_PORT" --no-proxy-headers \
  --log-level warning &

wait -n   # if either process exits, stop the other
