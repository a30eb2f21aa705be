"""The OPA engine: a real OPA server (``opa run --server``), queried over its REST API.

Queries and policy management go through ``opa-python-client``'s ``AsyncOpaClient`` (aiohttp),
through a thin subclass (``opa_http.PooledOpaClient``) that adds what it lacks: a pool of a
chosen size and a decision query that keeps OPA's error body. Requests are never retried (a
retry would only delay a refusal), and each decision is bounded by ``timeout``.

Two ways to give OPA the policy:

* ``push = True``: this engine owns the policy on that server. ``activate`` uploads every module
  (``PUT /v1/policies/gatekeeper-policy/<file>``) and the data (``PUT /v1/data/<key>``), then runs
  the revision's Rego tests and conformance cases *on the server*; if anything fails, the
  previous revision is uploaded again. While a revision is being installed, new decisions
  wait at a gate and decisions in flight finish first, so every decision is evaluated (and
  stamped) under exactly one revision.
* ``push = False``: OPA loads its own bundles (``opa run -b bundle.tar.gz``, or a bundle
  service). Decisions are queried with ``provenance=true`` and stamped with the revision of the
  bundle OPA reports, so the stamp is the revision that really decided.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from opa_client.errors import RegoParseError

from gatekeeper.contract import Decision
from gatekeeper.errors import (
    ConfigurationError,
    PolicyError,
    PolicyEvaluationError,
    PolicyLoadError,
)
from gatekeeper.health import PartHealth
from gatekeeper.policy.conformance import parse_cases, run_cases
from gatekeeper.policy.engine import UNDEFINED, EngineCounters, Verdict, decision_from_value
from gatekeeper.policy.opa_http import PooledOpaClient
from gatekeeper.policy.repo import PolicySource
from gatekeeper.policy.testing import discover_tests

log = logging.getLogger("gatekeeper.policy")

POLICY_ID_PREFIX = "gatekeeper-policy/"


class OpaEngine:
    """Evaluates decisions on an OPA server (see the module docstring)."""

    name = "opa"

    def __init__(
        self,
        url: str,
        decision: str = "data.gatekeeper.decision",
        *,
        source: PolicySource | None = None,
        push: bool = True,
        timeout: float = 0.5,
        admin_timeout: float = 10.0,
        pool_size: int = 32,
        token: str | None = None,
        check: bool = True,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigurationError(f"OPA url must be http(s)://host:port, not {url!r}")
        if push and source is None:
            raise ConfigurationError("the OPA engine needs a policy to push (or push = false)")
        self.url = url
        self.decision_rule = decision
        self.push = push
        self.timeout = timeout
        self.admin_timeout = admin_timeout
        self.check = check
        self.counters = EngineCounters()
        self._path = decision.removeprefix("data.").replace(".", "/")
        self._client = PooledOpaClient(
            host=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 80),
            ssl=parts.scheme == "https",
            token=token,
            retries=0,
            timeout=admin_timeout,
            pool_size=pool_size,
        )
        self._pending = source  # pushed by start()
        self._source: PolicySource | None = None  # what the server holds (push mode)
        self._data_keys: set[str] = set()
        self._revision = ""
        self._started = False
        self._start_lock = asyncio.Lock()
        self._next_start = 0.0
        self._activate_lock = asyncio.Lock()
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._inflight = 0
        self.last_error: str | None = None
        self.loaded_at: float | None = None

    @property
    def revision(self) -> str:
        return self._revision

    @property
    def source(self) -> PolicySource | None:
        """The revision installed on the server (push mode; before start: the one to install)."""
        return self._source or self._pending

    async def start(self) -> None:
        """Open the connection pool and, in push mode, install the configured revision.

        Never raises for an unreachable OPA or a rejected revision (gatekeeper still starts):
        the error is logged and kept in ``status()``, decisions fail closed, and a later
        decision retries."""
        try:
            await self._start()
        except PolicyError as exc:
            self._next_start = time.monotonic() + 1.0
            self.last_error = str(exc)
            log.error("OPA engine not ready, decisions are refused until it is: %s", exc)

    async def _start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            if self._client._session is None:
                await self._client._init_session()
            if self._pending is not None:
                await self.activate(self._pending)
            self._started = True

    async def _ensure_started(self) -> None:
        if self._started:
            return
        now = time.monotonic()
        if now < self._next_start:
            raise self.counters.failed(
                "unavailable",
                PolicyEvaluationError(f"OPA engine not ready: {self.last_error or 'starting'}"),
            )
        try:
            await self._start()
        except PolicyError as exc:
            # Retried on a later request, at most once a second; until then: fail closed.
            self._next_start = time.monotonic() + 1.0
            self.last_error = str(exc)
            raise self.counters.failed(
                "unavailable", PolicyEvaluationError(f"OPA engine not ready: {exc}")
            ) from exc

    async def verdict(self, input_doc: dict[str, Any]) -> Verdict:
        await self._ensure_started()
        value, revision = await self._query(input_doc, counted=True)
        validate = partial(decision_from_value, value, input_doc)
        return self.counters.verdict(validate, revision, "undefined")

    async def decide(self, input_doc: dict[str, Any]) -> Decision:
        return (await self.verdict(input_doc)).decision

    async def evaluate_raw(self, input_doc: dict[str, Any]) -> tuple[Any, str]:
        """The raw decision value (or ``UNDEFINED``) and the revision that produced it."""
        await self._ensure_started()
        return await self._query(input_doc, counted=False)

    async def _query(self, input_doc: dict[str, Any], *, counted: bool) -> tuple[Any, str]:
        # The gate: closed while a revision is installed; decisions in flight hold it open.
        while not self._open.is_set():
            await self._open.wait()
        self._inflight += 1
        self._idle.clear()
        try:
            return await self._query_now(input_doc, counted=counted, seconds=self.timeout)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def _query_now(
        self, input_doc: dict[str, Any], *, counted: bool, seconds: float
    ) -> tuple[Any, str]:
        revision = self._revision
        fail = self.counters.failed if counted else _uncounted
        try:
            async with asyncio.timeout(seconds):
                status, body = await self._client.query_decision(
                    self._path,
                    orjson.dumps(input_doc),
                    provenance=not self.push,
                    seconds=seconds,
                )
        except TimeoutError as exc:
            raise fail(
                "timeout", PolicyEvaluationError(f"OPA did not answer within {seconds} s")
            ) from exc
        except aiohttp.ClientError as exc:
            raise fail(
                "unavailable", PolicyEvaluationError(f"OPA at {self.url} unreachable: {exc}")
            ) from exc
        if status != 200:
            detail = f"{body.get('code', '')}: {body.get('message', '')}".strip(": ")
            raise fail("evaluation", PolicyEvaluationError(f"OPA answered {status}: {detail}"))
        if not self.push:
            revision = _bundle_revision(body)
        return body.get("result", UNDEFINED), revision

    async def activate(self, source: PolicySource) -> None:
        """Install ``source`` on the server (push mode), or raise ``PolicyLoadError`` with the
        previous revision installed again."""
        if not self.push:
            raise PolicyLoadError("this OPA server loads its own bundles (policy.opa.push = false)")
        async with self._activate_lock:
            if self._client._session is None:
                await self._client._init_session()
            self._open.clear()
            try:
                await self._idle.wait()
                await self._activate_closed(source)
            finally:
                self._open.set()

    async def _activate_closed(self, source: PolicySource) -> None:
        started = time.perf_counter()
        previous = self._source
        try:
            await self._install(source)
            self._source = source
            self._revision = source.revision
            if self.check:
                await self._check_on_server(source)
        except (PolicyError, aiohttp.ClientError, TimeoutError, RegoParseError) as exc:
            message = _reason(exc)
            if previous is not None:
                try:
                    await self._install(previous)
                    self._source, self._revision = previous, previous.revision
                except Exception as again:  # the server is now in an unknown state
                    self._source, self._revision = None, ""
                    log.error("OPA: could not reinstall revision %s: %s", previous.revision, again)
            else:
                self._source, self._revision = None, ""
            raise PolicyLoadError(f"revision {source.revision} rejected by OPA: {message}") from exc
        self.loaded_at = time.time()
        self.last_error = None
        # A revision is active: nothing older is left to install at start.
        self._pending = None
        self._started = True
        log.info(
            "policy revision %s active (OPA at %s, installed in %.0f ms)",
            source.revision,
            self.url,
            (time.perf_counter() - started) * 1000,
        )

    async def _install(self, source: PolicySource) -> None:
        client = self._client
        ours = [p for p in await client.get_policies_list() if p.startswith(POLICY_ID_PREFIX)]
        # Delete every module first: replacing them one by one could leave a module calling a
        # function that another, not yet replaced, no longer defines.
        await _until_settled(ours, lambda pid: client.delete_policy(pid), "delete")
        for key in sorted(self._data_keys - set(source.data)):
            await client.delete_data(key)
        for key, value in sorted(source.data.items()):
            if isinstance(value, dict):
                await client.update_or_create_data(value, key)
            else:
                await client.patch_data("", [{"op": "add", "path": f"/{key}", "value": value}])
        self._data_keys = set(source.data)
        await _until_settled(
            sorted(source.modules),
            lambda name: client.update_policy_from_string(
                source.modules[name], POLICY_ID_PREFIX + name, rego_compat=False
            ),
            "upload",
        )

    async def _check_on_server(self, source: PolicySource) -> None:
        problems: list[str] = []
        tests = discover_tests(source)
        for package in sorted({t.package for t in tests}):
            rules = [t.rule for t in tests if t.package == package and t.rule.startswith("test_")]
            path = package.removeprefix("data.")
            try:
                document = (await self._client.query_rule({}, path)).get("result", {})
            except aiohttp.ClientResponseError:
                document = {}  # an erroring test: every test of the package is reported
            problems.extend(f"{package}.{r}" for r in rules if document.get(r) is not True)
        if problems:
            names = ", ".join(problems[:5])
            raise PolicyLoadError(f"{len(problems)} Rego test(s) failed: {names}")
        results = await run_cases(self._query_for_check, parse_cases(source.cases))
        bad = [r for r in results if not r.ok]
        if bad:
            raise PolicyLoadError("; ".join(r.describe() for r in bad[:3]))

    async def _query_for_check(self, input_doc: dict[str, Any]) -> tuple[Any, str]:
        # Checking a revision is not on the request path: the admin timeout applies.
        return await self._query_now(input_doc, counted=False, seconds=self.admin_timeout)

    def status(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "url": self.url,
            "push": self.push,
            "revision": self._revision,
            "ready": self._started and (bool(self._revision) or not self.push),
            "loaded_at": self.loaded_at,
            "last_error": self.last_error,
            "pool_size": self._client.pool_size,
            **self.counters.as_dict(),
        }

    async def health(self) -> PartHealth:
        status = self.status()
        # Led by the name and revision, as /readyz has always shown them.
        detail = {"engine": self.name, "revision": self._revision, **status}
        return PartHealth(ok=bool(self._revision) and status["ready"], detail=detail)

    async def aclose(self) -> None:
        await self._client.close_connection()


def _uncounted(kind: str, error: PolicyError) -> PolicyError:
    return error


def _bundle_revision(body: dict[str, Any]) -> str:
    bundles = (body.get("provenance") or {}).get("bundles") or {}
    revisions = [f"{name}:{info.get('revision', '')}" for name, info in sorted(bundles.items())]
    if len(revisions) == 1:
        return str(next(iter(bundles.values())).get("revision", "")) or "unknown"
    return ",".join(revisions) or "unknown"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RegoParseError):
        return str(exc)
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"OPA answered {exc.status}: {exc.message}"
    if isinstance(exc, TimeoutError):
        return "OPA did not answer in time"
    return str(exc) or type(exc).__name__


async def _until_settled(items: list[str], call: Any, what: str) -> None:
    """Apply ``call`` to every item, retrying those that fail while others still succeed
    (OPA rejects a module that calls a function of a module it does not hold yet)."""
    pending = list(items)
    while pending:
        failed: list[tuple[str, BaseException]] = []
        for item in pending:
            try:
                await call(item)
            except (aiohttp.ClientConnectionError, TimeoutError):
                raise
            except Exception as exc:  # the client raises a class of its own per operation
                failed.append((item, exc))
        if len(failed) == len(pending):
            name, error = failed[0]
            raise PolicyLoadError(f"cannot {what} {name}: {_reason(error)}")
        pending = [item for item, _ in failed]
