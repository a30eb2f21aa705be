"""A development identity provider: one RSA key made at start, its JWKS served over HTTP, and
tokens minted on request. For trying gatekeeper's JWT identity locally; never for production.

    python -m examples.jwt_fastapi.dev_idp --port 9100
    curl -s 'localhost:9100/token?sub=alice&tier=enterprise&kyc_level=business'

``/.well-known/jwks.json`` is the JWKS; ``/token`` returns a token for the query's ``sub``,
``tier`` and ``kyc_level`` (claims namespaced as ``gatekeeper.toml`` maps them), valid 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

NAMESPACE = "https://my-model-api.example/"
AUDIENCE = "my-model-api"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    issuer = f"http://{args.host}:{args.port}/"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = {"keys": [{**public, "kid": "dev-1", "use": "sig", "alg": "RS256"}]}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/.well-known/jwks.json":
                self._send(200, json.dumps(jwks), "application/json")
            elif url.path == "/token":
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                now = int(time.time())
                claims = {
                    "iss": issuer,
                    "aud": AUDIENCE,
                    "sub": query.get("sub", "dev-user"),
                    "iat": now,
                    "exp": now + 600,
                    NAMESPACE + "tier": query.get("tier", "free"),
                    NAMESPACE + "kyc_level": query.get("kyc_level", "email"),
                }
                token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "dev-1"})
                self._send(200, token, "text/plain")
            else:
                self._send(404, "not found", "text/plain")

        def _send(self, status: int, body: str, kind: str) -> None:
            raw = body.encode()
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"dev identity provider on {issuer} (JWKS at {issuer}.well-known/jwks.json)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
