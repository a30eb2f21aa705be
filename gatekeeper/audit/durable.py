"""``durable`` mode: a response is not completed until its decision event is on disk.

``DurableResponse`` wraps the ASGI ``send`` of one request on a durable route. It holds back
``http.response.start`` and the final body message; when the final body message arrives, the
event is complete (status, quota state and shaping statistics are all known), so it is built,
written and fsynced (``DecisionLog.record_durable``, group commit), and only then is the held
part of the response sent. When the log cannot make the event durable in time:

- if nothing has been sent yet (a JSON response, a refusal), the client gets a 503
  ``decision_log_unavailable`` error instead, and that refusal is logged;
- if the head of a stream is already out, its end is withheld: the connection closes without
  the final chunk, so the client sees an incomplete response, never a complete unlogged one.
  If the event may still reach the log, a ``withheld`` entry naming its decision id says so.

Either way a client never receives a complete response whose event could be lost by a crash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gatekeeper.audit.chain import log_entry
from gatekeeper.audit.events import DecisionRecord
from gatekeeper.audit.log import DecisionLog, DecisionLogUnavailable

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Refuse = Callable[[Send, int, str, str], Awaitable[None]]


class DurableResponse:
    """The send-wrapper of one request on a durable route (see the module docstring)."""

    def __init__(
        self,
        send: Send,
        log: DecisionLog,
        record: DecisionRecord,
        *,
        labels: dict[str, str],
        timeout: float,
        refuse: Refuse,
    ) -> None:
        self._send = send
        self._log = log
        self._record = record
        self._labels = labels
        self._timeout = timeout
        self._refuse = refuse
        self._start: Message | None = None
        self.committed = False
        self.failed: DecisionLogUnavailable | None = None
        #: Called just before the event is built, to copy enforcement results into the record.
        self.before_commit: Callable[[], Awaitable[None]] | None = None

    async def __call__(self, message: Message) -> None:
        if self.failed is not None:
            return  # the response is withheld; nothing more goes out
        kind = message["type"]
        if kind == "http.response.start":
            self._start = message
            return
        if kind == "http.response.body" and not message.get("more_body", False):
            if await self._commit():
                await self._flush_start()
                await self._send(message)
            return
        await self._flush_start()
        await self._send(message)

    async def finish(self, *, send_held: bool = True) -> None:
        """After the app returned (or raised, with ``send_held=False``): commit the event of a
        response that never sent its final body, then send what is held."""
        if not self.committed and self.failed is None and await self._commit() and send_held:
            await self._flush_start()

    async def _flush_start(self) -> None:
        if self._start is not None:
            start, self._start = self._start, None
            await self._send(start)

    async def _commit(self) -> bool:
        if self.committed:
            return True
        rec = self._record
        rec.durable = True
        if self.before_commit is not None:
            await self.before_commit()
        rec.logged = True
        try:
            await self._log.record_durable(rec.to_event(self._labels), self._timeout)
        except DecisionLogUnavailable as exc:
            self.failed = exc
            rec.error = {"code": exc.code, "message": str(exc)}
            if exc.pending:
                entry = log_entry("withheld", self._labels, decision_id=rec.decision_id)
                entry["gatekeeper"]["withheld"]["reason"] = str(exc)
                self._log.record(entry)
            else:
                rec.logged = False  # not in the log: the middleware logs what the client got
            if self._start is not None:
                self._start = None
                await self._refuse(self._send, exc.status, exc.code, str(exc))
            return False
        self.committed = True
        return True
