"""Hot reload: watch a policy directory or bundle file and activate each new revision.

``ReloadingEngine`` wraps an engine and is itself a ``PolicyEngine``. A background task polls
the policy path every ``interval`` seconds, off the request path: it takes a cheap fingerprint
of the files (names, sizes, mtimes) on a worker thread, and only when that changes loads the
policy (on a worker thread too) and compares revisions. A new revision goes to the engine's
``activate``, which checks it (compiles, runs its Rego tests and conformance cases) and swaps it
in atomically, logged (INFO) and counted (``reloads``). A rejected revision leaves the last good
one active; the rejection is logged with the rejected revision and why, counted
(``reload_failures``; both exported as ``gatekeeper_policy_reloads_total``) and shown in
``status()`` (``last_error``, which ``/readyz`` reports in its detail) until the files are good
again: a later revision is accepted, or the files are back to the active revision.
``last_rejected`` keeps the latest rejection after that.

Revisions are compared by their content digest (every file the check reads, conformance cases
included), so fixing only ``conformance/cases.yaml`` retries a rejected revision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from gatekeeper._tasks import cancel_and_wait, poll
from gatekeeper.contract import Decision
from gatekeeper.errors import PolicyError
from gatekeeper.health import PartHealth
from gatekeeper.policy.engine import PolicyEngine, Verdict
from gatekeeper.policy.repo import PolicySource, fingerprint, load_policy

log = logging.getLogger("gatekeeper.policy")


class ReloadingEngine:
    """A ``PolicyEngine`` that follows the revisions of a policy path (see module docstring)."""

    def __init__(
        self, engine: PolicyEngine, path: Path, *, interval: float = 2.0, digest: str = ""
    ) -> None:
        self.engine = engine
        self.name = engine.name
        self.path = path
        self.interval = interval
        self.reloads = 0
        self.reload_failures = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.rejected_revision: str | None = None
        #: The latest rejection (revision, error, at), kept after the error is resolved.
        self.last_rejected: dict[str, Any] | None = None
        self.last_checked_at: float | None = None
        #: Content digests (``PolicySource.digest``) of the active and the rejected files.
        active: PolicySource | None = getattr(engine, "source", None)
        self._active_digest = digest or (active.digest if active is not None else "")
        self._rejected_digest: str | None = None
        self._fingerprint = fingerprint(path)
        self._task: asyncio.Task[None] | None = None
        self._check_lock: asyncio.Lock | None = None

    @property
    def revision(self) -> str:
        return self.engine.revision

    @property
    def source(self) -> PolicySource | None:
        """The active revision's source, when the engine exposes it (the decision log reads
        the policy's masking data from it)."""
        source: PolicySource | None = getattr(self.engine, "source", None)
        return source

    async def verdict(self, input_doc: dict[str, Any]) -> Verdict:
        if self._task is None:
            self._start_watching()
        return await self.engine.verdict(input_doc)

    async def decide(self, input_doc: dict[str, Any]) -> Decision:
        return (await self.verdict(input_doc)).decision

    async def evaluate_raw(self, input_doc: dict[str, Any]) -> tuple[Any, str]:
        return await self.engine.evaluate_raw(input_doc)

    async def activate(self, source: PolicySource) -> None:
        await self.engine.activate(source)

    async def start(self) -> None:
        await self.engine.start()
        self._start_watching()

    def _start_watching(self) -> None:
        if self._task is None or self._task.done():
            watcher = poll(self.interval, self.check, log, "policy reload check failed")
            self._task = asyncio.get_running_loop().create_task(
                watcher, name="gatekeeper-policy-reload"
            )

    async def check(self) -> bool:
        """Poll once: ``True`` if a new revision was activated. Never raises for a bad policy."""
        if self._check_lock is None:
            self._check_lock = asyncio.Lock()
        async with self._check_lock:
            self.last_checked_at = time.time()
            current = await asyncio.to_thread(fingerprint, self.path)
            if current == self._fingerprint:
                return False
            source: PolicySource | None = None
            try:
                source = await asyncio.to_thread(load_policy, self.path)
                if source.digest == self._active_digest:
                    # Back to the active revision (a bad edit undone): nothing is wrong now.
                    self._fingerprint = current
                    self._resolved()
                    return False
                if source.digest == self._rejected_digest:
                    self._fingerprint = current
                    return False
                previous = self.engine.revision
                await self.engine.activate(source)
            except PolicyError as exc:
                self._rejected(current, exc, source)
                return False
            log.info(
                "policy reload: revision %s activated (was %s) from %s",
                source.revision,
                previous,
                self.path,
            )
            self._fingerprint = current
            self._active_digest = source.digest
            self.reloads += 1
            self._resolved()
            return True

    def _resolved(self) -> None:
        self.last_error = None
        self.last_error_at = None
        self.rejected_revision = None
        self._rejected_digest = None

    def _rejected(self, current: Any, exc: PolicyError, source: PolicySource | None) -> None:
        # Remember the fingerprint and digest: the same broken files are not retried on every
        # poll; any change to a file the check reads (conformance cases too) is.
        self._fingerprint = current
        self.reload_failures += 1
        self.last_error = str(exc)
        self.last_error_at = time.time()
        self.rejected_revision = source.revision if source is not None else None
        self._rejected_digest = source.digest if source is not None else None
        self.last_rejected = {
            "revision": self.rejected_revision,
            "error": self.last_error,
            "at": self.last_error_at,
        }
        log.error(
            "policy reload rejected: revision %s (%s); revision %s stays active",
            self.rejected_revision or "(did not load)",
            exc,
            self.engine.revision,
        )

    def status(self) -> dict[str, Any]:
        return {**self.engine.status(), "reload": self._reload_status()}

    async def health(self) -> PartHealth:
        """The engine's health; a rejected revision leaves it ok (the last good one serves),
        and shows in ``reload``."""
        engine = await self.engine.health()
        detail = {**engine.detail, "reload": self._reload_status()}
        return PartHealth(ok=engine.ok, degraded=engine.degraded, detail=detail)

    def _reload_status(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "interval_seconds": self.interval,
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "rejected_revision": self.rejected_revision,
            "last_rejected": self.last_rejected,
            "last_checked_at": self.last_checked_at,
        }

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.engine.aclose()
