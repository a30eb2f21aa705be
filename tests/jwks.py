"""A local identity provider for tests: signing keys generated at test time, their JWKS served
over HTTP on a free loopback port (``http.server`` in a thread), and tokens signed with them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://idp.test/"
AUDIENCE = "https://api.test/"


class IdentityProvider:
    """Keys by ``kid``; ``published`` are the ones the JWKS lists (rotation changes it)."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.published: list[str] = []
        self.fetches = 0
        self.status = 200  # set to 503 to make the endpoint fail while it still listens
        self.url = ""
        self._server: ThreadingHTTPServer | None = None

    def new_key(self, kid: str, kind: str = "RS256", publish: bool = True) -> str:
        if kind == "ES256":
            self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        else:
            self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.append(kid)
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            key = self.keys[kid]
            alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
            algorithm = jwt.get_algorithm_by_name(alg)
            jwk = json.loads(algorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": alg})
        return {"keys": keys}

    def token(
        self,
        kid: str,
        *,
        expires_in: float = 300,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        **claims: Any,
    ) -> str:
        key = self.keys[kid]
        alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
        now = int(time.time())
        payload = {"iss": issuer, "aud": audience, "iat": now, "exp": now + expires_in, **claims}
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve the JWKS at ``http://127.0.0.1:PORT/.well-known/jwks.json``; yields the URL."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.fetches += 1
                body = json.dumps(provider.jwks()).encode()
                self.send_response(provider.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server = server
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
        try:
            yield self.url
        finally:
            self.stop()
            thread.join(5)

    def stop(self) -> None:
        """Stop listening: connections to the JWKS URL are refused from now on."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def unsigned_token(**claims: Any) -> str:
    """A token with ``alg: none`` (no signature), as an attacker would send it."""
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
    return jwt.encode(payload, None, algorithm="none")
