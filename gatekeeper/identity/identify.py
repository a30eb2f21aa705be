"""The identify stage: the configured methods, tried in order, give the request its subject.

``identity.methods`` lists them (``["jwt", "api_key"]``, say). For each request the credential
is read once (``Authorization: Bearer …`` or ``x-api-key``), then each method in turn:

- ``jwt``: a credential shaped like a JWT is verified (``gatekeeper.identity.jwt``). A token
  that fails ends the chain with 401 ``invalid_token`` or ``token_expired``: a JWT is never
  retried as an API key. Anything else is left to the next method.
- ``api_key``: the credential is looked up in the subject store (file or Redis, behind the
  in-process cache); an unknown key is left to the next method.
- ``resolver``: the app's own hook (``SubjectResolver``) gets the headers and the client; its
  ``None`` is left to the next method.

The first subject found wins, and ``subject.auth_method`` names the method that found it
(``input.subject.auth_method`` for policies, and in the decision event). When none does: 401,
``missing_api_key``/``invalid_api_key`` when API keys are among the methods (as before there
were methods), else ``missing_token``/``invalid_token`` for JWTs, else
``missing_credentials``/``invalid_credentials``. A store, hook or JWKS that cannot answer: 503
``identity_unavailable`` (fail closed).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeAlias

from pydantic import ValidationError
from starlette.datastructures import Headers

from gatekeeper.contract import AuthMethod, Subject
from gatekeeper.errors import AuthenticationError, ConfigurationError, IdentityError
from gatekeeper.health import PartHealth
from gatekeeper.identity.cache import CachedSubjectStore, SubjectCache
from gatekeeper.identity.credentials import api_key_from_headers
from gatekeeper.identity.jwt import JwtVerifier, looks_like_jwt
from gatekeeper.identity.stores import (
    FileSubjectStore,
    RedisSubjectStore,
    SubjectAttributes,
    SubjectStore,
    hash_api_key,
)
from gatekeeper.observability.logs import redact
from gatekeeper.settings import IdentitySettings

log = logging.getLogger("gatekeeper.identity")

#: The app's own resolver: ``async def resolve(headers, client) -> Subject | dict | None``.
#: ``headers`` are the request's (case-insensitive, ``starlette.datastructures.Headers``),
#: ``client`` is the ``(host, port)`` the connection comes from (before trusted-proxy
#: resolution), or ``None``. Return a ``Subject``, a mapping of its attributes (``id``,
#: ``org``, ``tier``, ``kyc_level``, ``account_created``, ``flags``, ``payment_fingerprint``),
#: or ``None`` for "not one of mine". Raising refuses the request with 503.
SubjectResolver: TypeAlias = Callable[
    [Headers, tuple[str, int] | None], Awaitable[Subject | Mapping[str, Any] | None]
]


class ResolverHook:
    """The app's ``SubjectResolver``, behind the subject cache and a timeout.

    Answers are cached by the SHA-256 of the request's credential (``Authorization: Bearer`` or
    ``x-api-key``) for ``ttl`` seconds, ``None`` included; a request without one calls the hook
    every time.
    """

    def __init__(self, hook: SubjectResolver, *, ttl: float, size: int, timeout: float) -> None:
        if not callable(hook):
            raise ConfigurationError("identity.resolver is not callable")
        self.hook = hook
        self.cache = SubjectCache(ttl, size)
        self.timeout = timeout

    async def resolve(
        self,
        headers: list[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
        credential: str | None,
    ) -> Subject | None:
        digest = hash_api_key(credential) if credential is not None else None
        if digest is not None:
            hit, cached = self.cache.get(digest)
            if hit:
                return cached
        try:
            async with asyncio.timeout(self.timeout):
                found = await self.hook(Headers(raw=headers), client)
            subject = _as_subject(found)
        except TimeoutError as exc:
            raise IdentityError(f"the resolver hook did not answer in {self.timeout:g} s") from exc
        except Exception as exc:
            log.error("the identity resolver hook failed", exc_info=exc)
            raise IdentityError("the resolver hook failed") from exc
        if digest is not None:
            self.cache.put(digest, subject)
        return subject.model_copy() if subject is not None else None


def _as_subject(found: object) -> Subject | None:
    if found is None or isinstance(found, Subject):
        return found
    if isinstance(found, Mapping):
        try:
            return SubjectAttributes.model_validate(found).to_subject()
        except ValidationError as exc:
            raise TypeError(f"the resolver hook returned an invalid subject: {exc}") from exc
    raise TypeError(f"the resolver hook returned a {type(found).__name__}, not a subject")


def load_resolver(path: str) -> SubjectResolver:
    """The hook named ``module:function`` (``identity.resolver``)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"identity.resolver {path!r}: expected `module:function`")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"identity.resolver {path!r}: {exc}") from exc
    if not callable(target):
        raise ConfigurationError(f"identity.resolver {path!r} is not callable")
    if not (inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(target.__call__)):
        raise ConfigurationError(f"identity.resolver {path!r} must be an async function")
    resolver: SubjectResolver = target
    return resolver


class Identifier:
    """The identity methods in their order; ``identify`` gives a request its subject."""

    def __init__(
        self,
        methods: Iterable[AuthMethod],
        *,
        store: SubjectStore | None = None,
        jwt: JwtVerifier | None = None,
        resolver: ResolverHook | None = None,
    ) -> None:
        self.methods: tuple[AuthMethod, ...] = tuple(methods)
        self.store, self.jwt, self.resolver = store, jwt, resolver
        for method, part in (("api_key", store), ("jwt", jwt), ("resolver", resolver)):
            if (method in self.methods) != (part is not None):
                raise ConfigurationError(f"identity method {method}: listed and given differ")
        if "api_key" in self.methods:
            self._unidentified = ("missing_api_key", "missing API key", "invalid_api_key")
        elif "jwt" in self.methods:
            self._unidentified = ("missing_token", "missing bearer token", "invalid_token")
        else:
            self._unidentified = (
                "missing_credentials",
                "missing credentials",
                "invalid_credentials",
            )

    @classmethod
    def from_settings(
        cls, settings: IdentitySettings, *, resolver: SubjectResolver | None = None
    ) -> Identifier:
        """The methods ``identity`` names; ``resolver`` overrides ``identity.resolver``."""
        methods = settings.methods
        store = _subject_store(settings) if "api_key" in methods else None
        verifier = JwtVerifier(settings.jwt) if "jwt" in methods else None
        hook: ResolverHook | None = None
        if "resolver" in methods:
            found = resolver or (load_resolver(settings.resolver) if settings.resolver else None)
            if found is None:
                raise ConfigurationError(
                    "identity.methods lists resolver: set identity.resolver = 'module:function' "
                    "or pass resolver= to Gatekeeper.from_settings"
                )
            hook = ResolverHook(
                found,
                ttl=settings.cache_seconds,
                size=settings.cache_size,
                timeout=settings.resolver_timeout,
            )
        return cls(methods, store=store, jwt=verifier, resolver=hook)

    async def identify(
        self, headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None
    ) -> Subject:
        """The request's subject, ``auth_method`` set; ``AuthenticationError`` (401) when no
        method finds one, ``IdentityError`` (503) when one cannot answer."""
        credential = api_key_from_headers(headers)
        for method in self.methods:
            subject: Subject | None = None
            if method == "api_key":
                if credential is not None:
                    assert self.store is not None
                    subject = await self.store.lookup(credential)
            elif method == "jwt":
                if credential is not None and looks_like_jwt(credential):
                    assert self.jwt is not None
                    subject = await self.jwt.subject(credential)  # or 401: never retried
            else:
                assert self.resolver is not None
                subject = await self.resolver.resolve(headers, client, credential)
            if subject is not None:
                subject.auth_method = method
                return subject
        missing_code, missing_message, invalid_code = self._unidentified
        if credential is None:
            raise AuthenticationError(missing_message, missing_code)
        message = "invalid API key" if invalid_code == "invalid_api_key" else "invalid credentials"
        if invalid_code == "invalid_token":
            message = "invalid token: not a JWT"
        raise AuthenticationError(message, invalid_code)

    async def start(self) -> None:
        """Fetch the JWKS ahead of the first token (failures are logged, not raised)."""
        if self.jwt is not None:
            await self.jwt.start()

    async def health(self) -> PartHealth:
        """The subject store's and the JWT verifier's health, each under its name; degraded
        when either is (other methods, or cached subjects and keys, may still identify)."""
        detail: dict[str, Any] = {"status": "ok", "methods": list(self.methods)}
        degraded = False
        parts: tuple[tuple[str, SubjectStore | JwtVerifier | None], ...] = (
            ("store", self.store),
            ("jwt", self.jwt),
        )
        for name, part in parts:
            if part is not None:
                report = await part.health()
                detail[name] = report.detail
                degraded = degraded or report.degraded or not report.ok
        if degraded:
            detail["status"] = "degraded"
        return PartHealth(ok=True, degraded=degraded, detail=detail)

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.aclose()
        if self.jwt is not None:
            await self.jwt.aclose()


def _subject_store(settings: IdentitySettings) -> SubjectStore:
    if settings.store == "redis":
        if not settings.redis_url:
            raise ConfigurationError("identity.store = redis needs identity.redis_url")
        # The cache in front of it replaces the store's own (bounded, and shared in shape
        # with the resolver hook's).
        try:
            redis = RedisSubjectStore(
                settings.redis_url, prefix=settings.redis_prefix, cache_seconds=0
            )
        except ValueError as exc:  # redis-py's verdict on the URL
            raise ConfigurationError(f"identity.redis_url: {redact(str(exc))}") from exc
        return CachedSubjectStore(redis, settings.cache_seconds, settings.cache_size)
    if settings.subjects_file is None:
        raise ConfigurationError("identity.store = file needs identity.subjects_file")
    return FileSubjectStore(settings.subjects_file, reload_seconds=settings.cache_seconds)
