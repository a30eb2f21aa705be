"""Bearer JWTs: verified with PyJWT against a JWKS URL, a PEM public key or a shared secret.

What is checked, in order: the token's shape; its header's ``alg`` is in the allow-list
(``none`` never is, HS* only with a shared secret, so a public key can never be used as an HMAC
secret); its key (by ``kid`` from the JWKS, whose key type must fit the algorithm); the
signature; ``exp`` (required), ``nbf`` and ``iat`` with ``leeway_seconds`` of clock skew;
``iss`` and ``aud`` (both required). Then the claims mapping (``identity.jwt.claims``) turns
the claims into a subject.

A token that fails gets ``AuthenticationError`` (401): ``token_expired`` when only its expiry
is past, ``invalid_token`` otherwise, with a message saying what failed. The token itself is
never logged nor echoed.

The JWKS (``JwksCache``) is fetched with httpx at start-up, refetched in the background once
older than ``jwks_refresh_seconds`` (stale-while-revalidate: requests keep verifying with the
cached keys meanwhile), and refetched at once for a ``kid`` it does not hold (key rotation), at
most once per ``jwks_min_fetch_interval``. When the endpoint cannot be reached, cached keys keep
working for ``jwks_max_stale_seconds`` past their refresh time; a token whose key is not cached
gets 503 ``identity_unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import ValidationError

from gatekeeper.contract import KycLevel, Subject
from gatekeeper.errors import AuthenticationError, ConfigurationError, IdentityError
from gatekeeper.health import PartHealth
from gatekeeper.identity.stores import SubjectAttributes
from gatekeeper.settings import JwtClaimSettings, JwtSettings

log = logging.getLogger("gatekeeper.identity")

#: ``header.payload.signature``, the header starting ``{"`` (``eyJ``): how a credential is told
#: to be a JWT rather than an API key.
_JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

#: The key types each algorithm family verifies with.
_FAMILY_KEYS: dict[str, tuple[type, ...]] = {
    "RS": (rsa.RSAPublicKey,),
    "PS": (rsa.RSAPublicKey,),
    "ES": (ec.EllipticCurvePublicKey,),
    "Ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}


def looks_like_jwt(credential: str) -> bool:
    """Whether a bearer credential has a JWT's shape (and so is the JWT method's to judge)."""
    return _JWT_SHAPE.fullmatch(credential) is not None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key of a JWKS: the public key, and the algorithm the JWKS pins it to (if any)."""

    key: Any
    alg: str | None


class JwksCache:
    """The keys of one JWKS URL, by ``kid``; see the module docstring for when it fetches."""

    def __init__(
        self,
        url: str,
        *,
        algorithms: list[str],
        refresh_seconds: float = 300.0,
        max_stale_seconds: float = 86_400.0,
        timeout: float = 2.0,
        min_fetch_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.algorithms = set(algorithms)
        self.refresh_seconds = refresh_seconds
        self.max_stale_seconds = max_stale_seconds
        self.timeout = timeout
        self.min_fetch_interval = min_fetch_interval
        self._clock = clock
        self._keys: dict[str | None, SigningKey] = {}
        self._fetched_at: float | None = None  # the last successful fetch
        self._attempted_at = float("-inf")
        self.last_error: str | None = None
        self._fetching: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    async def key(self, kid: str | None) -> SigningKey:
        """The key that signed a token with this ``kid``.

        Raises ``AuthenticationError`` (invalid_token) when the JWKS, freshly fetched, has no
        such key; ``IdentityError`` (503) when it cannot be fetched and the key is not cached.
        """
        now = self._clock()
        keys = self._usable(now)
        if keys and self._fetched_at is not None and now - self._fetched_at > self.refresh_seconds:
            self._start_fetch()  # stale-while-revalidate: this request uses the cached keys
        found = _pick(keys, kid)
        if found is not None:
            return found
        # Unknown kid (a rotation, or a forged header): fetch now, but not once per request.
        if self._fetching is not None or now - self._attempted_at >= self.min_fetch_interval:
            await self._fetch_shared()
            found = _pick(self._usable(self._clock()), kid)
            if found is not None:
                return found
        if self.last_error is not None:
            # The endpoint is down: the key may well exist; refuse without blaming the client.
            raise IdentityError("the identity provider's signing keys cannot be fetched")
        raise AuthenticationError("invalid token: signing key not found", "invalid_token")

    async def prefetch(self) -> None:
        """Fetch the keys ahead of the first token (at start-up); failures are only logged."""
        if self._fetched_at is None:
            await self._fetch_shared()

    async def health(self) -> PartHealth:
        if self.last_error is None:
            return PartHealth(ok=True, detail={"status": "ok", "keys": len(self._keys)})
        # Degraded either way (other identity methods may still work); ``cached_keys`` says
        # whether tokens signed by known keys still verify.
        usable = len(self._usable(self._clock()))
        detail = {"status": "degraded", "error": self.last_error, "cached_keys": usable}
        return PartHealth(ok=True, degraded=True, detail=detail)

    async def aclose(self) -> None:
        if self._fetching is not None:
            self._fetching.cancel()
        if self._client is not None:
            await self._client.aclose()

    def _usable(self, now: float) -> dict[str | None, SigningKey]:
        if self._fetched_at is None:
            return {}
        if now - self._fetched_at > self.refresh_seconds + self.max_stale_seconds:
            return {}
        return self._keys

    def _start_fetch(self) -> None:
        if self._fetching is None:
            self._attempted_at = self._clock()
            self._fetching = asyncio.create_task(self._fetch())

    async def _fetch_shared(self) -> None:
        # Every request waiting for keys waits for the same fetch; cancelling one does not
        # cancel it for the others.
        self._start_fetch()
        task = self._fetching
        if task is not None:
            await asyncio.shield(task)

    async def _fetch(self) -> None:
        try:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
            response = await self._client.get(self.url, headers={"accept": "application/json"})
            response.raise_for_status()
            keys = self._parse(response.json())
            if not keys:
                raise ValueError("no usable signing key in the JWKS")
        except (httpx.HTTPError, ValueError) as exc:
            self.last_error = f"JWKS fetch failed: {type(exc).__name__}"
            log.warning("JWKS %s could not be fetched: %s", self.url, exc)
        else:
            self._keys, self._fetched_at, self.last_error = keys, self._clock(), None
        finally:
            self._fetching = None

    def _parse(self, document: Any) -> dict[str | None, SigningKey]:
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError("a JWKS is an object with a `keys` list")
        keys: dict[str | None, SigningKey] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            if entry.get("alg") is not None and entry["alg"] not in self.algorithms:
                continue
            try:
                jwk = jwt.PyJWK(entry)
            except (jwt.PyJWTError, ValueError, TypeError):
                continue  # a key type this PyJWT cannot use: the others still can
            kid = entry.get("kid")
            keys[kid if isinstance(kid, str) else None] = SigningKey(jwk.key, entry.get("alg"))
        return keys


def _pick(keys: Mapping[str | None, SigningKey], kid: str | None) -> SigningKey | None:
    if kid is None:
        # No kid: only unambiguous with a single key.
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


class JwtVerifier:
    """Verifies a bearer JWT and maps its claims to a subject (``identity.jwt``)."""

    def __init__(self, settings: JwtSettings, *, jwks: JwksCache | None = None) -> None:
        settings.check_usable()
        self.settings = settings
        self.algorithms = list(settings.algorithms)
        self.claims = settings.claims
        self._static: Any = None
        self.jwks = jwks
        if settings.secret is not None:
            self._static = settings.secret.get_secret_value().encode()
        elif settings.public_key_file is not None:
            self._static = _read_public_key(settings)
        elif jwks is None:
            assert settings.jwks_url is not None
            self.jwks = JwksCache(
                settings.jwks_url,
                algorithms=self.algorithms,
                refresh_seconds=settings.jwks_refresh_seconds,
                max_stale_seconds=settings.jwks_max_stale_seconds,
                timeout=settings.jwks_timeout,
                min_fetch_interval=settings.jwks_min_fetch_interval,
            )

    async def start(self) -> None:
        if self.jwks is not None:
            await self.jwks.prefetch()

    async def aclose(self) -> None:
        if self.jwks is not None:
            await self.jwks.aclose()

    async def health(self) -> PartHealth:
        """The JWKS's health; a fixed key or secret depends on nothing."""
        if self.jwks is not None:
            return await self.jwks.health()
        return PartHealth(ok=True, detail={"status": "ok"})

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's verified claims; raises ``AuthenticationError`` or ``IdentityError``."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationError("invalid token: malformed", "invalid_token") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise AuthenticationError(
                f"invalid token: algorithm {str(alg)[:16]!r} is not accepted", "invalid_token"
            )
        if self.jwks is not None:
            kid = header.get("kid")
            signing = await self.jwks.key(kid if isinstance(kid, str) else None)
            if signing.alg is not None and signing.alg != alg:
                raise AuthenticationError(
                    "invalid token: key and algorithm differ", "invalid_token"
                )
            key: Any = signing.key
        else:
            key = self._static
        if not _key_fits(alg, key):
            raise AuthenticationError("invalid token: key and algorithm differ", "invalid_token")
        s = self.settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("token expired", "token_expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthenticationError("invalid token: audience", "invalid_token") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthenticationError("invalid token: issuer", "invalid_token") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthenticationError("invalid token: signature", "invalid_token") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthenticationError("invalid token: not yet valid", "invalid_token") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(
                f"invalid token: no `{exc.claim}` claim", "invalid_token"
            ) from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthenticationError("invalid token", "invalid_token") from exc
        return claims

    async def subject(self, token: str) -> Subject:
        """The subject a valid token names (``auth_method`` is the caller's to set)."""
        return subject_from_claims(await self.verify(token), self.claims)


def _key_fits(alg: str, key: Any) -> bool:
    if alg.startswith("HS"):
        return isinstance(key, bytes)  # a shared secret, never a public key
    family = "Ed" if alg == "EdDSA" else alg[:2]
    return isinstance(key, _FAMILY_KEYS.get(family, ()))


def _read_public_key(settings: JwtSettings) -> Any:
    path = settings.public_key_file
    assert path is not None
    try:
        return load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"identity.jwt.public_key_file {path}: {exc}") from exc


def subject_from_claims(claims: Mapping[str, Any], mapping: JwtClaimSettings) -> Subject:
    """The subject the claims describe, as ``identity.jwt.claims`` maps them.

    The subject claim is required (``invalid_token`` without it); a missing tier or KYC level
    takes its default; an unknown KYC level counts as the default (never as a stronger one).
    """
    subject_id = _claim(claims, mapping.subject)
    if not isinstance(subject_id, str | int) or isinstance(subject_id, bool) or subject_id == "":
        raise AuthenticationError(
            f"invalid token: no `{mapping.subject}` claim naming the subject", "invalid_token"
        )
    kyc = _claim(claims, mapping.kyc_level)
    if kyc not in KycLevel._value2member_map_:
        kyc = mapping.default_kyc_level
    tier = _claim(claims, mapping.tier)
    flags = _claim(claims, mapping.flags)
    if isinstance(flags, str):
        flags = flags.split()
    attributes = {
        "id": str(subject_id),
        "org": _text(_claim(claims, mapping.org)),
        "tier": tier if isinstance(tier, str) and tier else mapping.default_tier,
        "kyc_level": kyc,
        "account_created": _date(_claim(claims, mapping.account_created)),
        "flags": [str(f) for f in flags] if isinstance(flags, list) else [],
        "payment_fingerprint": _text(_claim(claims, mapping.payment_fingerprint)),
    }
    try:
        return SubjectAttributes.model_validate(attributes).to_subject()
    except ValidationError as exc:
        raise AuthenticationError("invalid token: unusable claims", "invalid_token") from exc


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    if not name:
        return None
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    return str(value) if isinstance(value, str | int) else None


def _date(value: Any) -> date | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC).date()
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None
