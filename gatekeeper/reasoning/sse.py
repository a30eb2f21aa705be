"""Server-sent events: an incremental parser that survives any chunk boundary, and an encoder.

``SSEDecoder`` follows the WHATWG "parsing an event stream" and "interpreting an event stream"
rules (HTML Living Standard, server-sent events): CRLF, lone LF and lone CR all end a line, also
when a CRLF is split across two reads; one leading BOM is ignored; ``:`` lines are comments;
``data`` lines are joined with LF; ``id`` persists across events and ignores values containing
NUL; ``retry`` takes ASCII digits only; a blank line dispatches; bytes after the last blank line
are never dispatched.

Every frame keeps its original bytes in ``SSEEvent.raw``, so a proxy can forward an event it did
not change byte for byte. A block that dispatches nothing (a ``: keep-alive`` comment, a lone
``retry:`` or ``id:`` line) comes out as a *pass-through frame* (``dispatch=False``): it must be
forwarded as is and never interpreted, which keeps keep-alives flowing to the client. The
concatenation of every frame's ``raw`` is exactly the input up to its last line terminator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gatekeeper.errors import GatekeeperError

DEFAULT_MAX_EVENT_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
# \r\n first so that a complete CRLF is one terminator; a CR at the very end of a read is
# handled by the decoder's pending-LF flag.
_EOL = re.compile(rb"\r\n|\r|\n")
_LINE_SPLIT = re.compile(r"\r\n|\r|\n")


class SSEEventTooLarge(GatekeeperError):
    """One upstream SSE event (or line) exceeds the configured size limit.

    The responder turns this into a clean end of stream (a dialect error frame), never into a
    partial or unshaped event.
    """

    status = 502
    code = "upstream_event_too_large"

    def __init__(self, message: str, completed: list[SSEEvent] | None = None) -> None:
        super().__init__(message)
        #: Frames completed in the same ``feed`` call before the limit was hit.
        self.completed: list[SSEEvent] = completed or []


@dataclass(slots=True)
class SSEEvent:
    """One dispatched SSE event. ``raw`` holds the original frame bytes when known, so an
    unchanged event can be forwarded byte for byte.

    ``event`` is ``None`` when the frame had no (or an empty) ``event:`` line, which clients read
    as ``message``. ``id`` is the stream's last-event-id at dispatch (``None`` when unset or
    reset), ``retry`` the reconnection time set in this frame. ``dispatch`` is ``False`` for
    pass-through frames: blocks that dispatch nothing (comments, keep-alives) and are forwarded
    raw. Shapers set ``raw = None`` on any event they change, so it is re-encoded.
    """

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    raw: bytes | None = None
    dispatch: bool = True


class SSEDecoder:
    """Incremental SSE parser: ``feed`` bytes as they arrive, get complete frames back.

    At most one frame (plus one unterminated line) is buffered; a frame or line larger than
    ``max_event_bytes`` raises ``SSEEventTooLarge``.
    """

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self.last_event_id: str | None = None
        self.reconnection_ms: int | None = None
        #: Bytes seen after the last line terminator when the stream closed (never dispatched).
        self.discarded_bytes = 0
        self._line = bytearray()  # the current line, not yet terminated
        self._frame = bytearray()  # raw bytes of the current block's complete lines
        self._data: list[str] = []
        self._event_type = ""
        self._retry: int | None = None
        self._at_start = True  # still looking for the leading BOM
        self._skip_lf = False  # the last read ended in CR: a leading LF completes that CRLF
        self._closed = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse ``chunk`` and return every frame it completed, in order."""
        if self._closed:
            raise RuntimeError("SSEDecoder.feed() after close()")
        out: list[SSEEvent] = []
        data = bytes(chunk)
        if not data:
            return out
        if self._at_start:
            self._line += data
            head = bytes(self._line[:3])
            if len(head) < 3 and _BOM.startswith(head):
                return out  # too short to tell whether a BOM starts the stream
            self._at_start = False
            data = bytes(self._line)
            self._line.clear()
            if data.startswith(_BOM):
                # Keep the BOM in the first frame's raw bytes but not in its first line.
                self._frame += _BOM
                data = data[3:]
        if self._skip_lf:
            self._skip_lf = False
            if data[:1] == b"\n":
                # Second half of a CRLF split across reads: not a new line. It belongs to the
                # frame in progress; if the CR completed a frame (already emitted), it is passed
                # on as a frame of its own. Either way the raw bytes add up to the input.
                if self._frame:
                    self._frame += b"\n"
                else:
                    out.append(SSEEvent(data="", raw=b"\n", dispatch=False))
                data = data[1:]
        start = 0
        for match in _EOL.finditer(data):
            end = match.end()
            self._line += data[start : match.start()]
            line = bytes(self._line)
            self._line.clear()
            self._frame += line
            self._frame += match.group()
            self._check_size(len(self._frame), out)
            if match.group() == b"\r" and end == len(data):
                self._skip_lf = True
            self._process_line(line, out)
            start = end
        self._line += data[start:]
        self._check_size(len(self._frame) + len(self._line), out)
        return out

    def close(self) -> list[SSEEvent]:
        """End of stream: an unterminated final frame is discarded, as the spec requires.

        Returns the frames still to emit (always none: only complete frames are ever emitted;
        the list keeps ``feed``'s shape for callers that treat both alike).
        """
        if not self._closed:
            self._closed = True
            self.discarded_bytes = len(self._frame) + len(self._line)
            self._frame.clear()
            self._line.clear()
            self._data.clear()
        return []

    def _check_size(self, size: int, completed: list[SSEEvent]) -> None:
        if size > self.max_event_bytes:
            raise SSEEventTooLarge(
                f"upstream SSE event exceeds {self.max_event_bytes} bytes; stream aborted",
                completed,
            )

    def _process_line(self, raw_line: bytes, out: list[SSEEvent]) -> None:
        if not raw_line:
            self._dispatch(out)
            return
        line = raw_line.decode("utf-8", errors="replace")
        if line[0] == ":":
            return  # comment; stays in the frame's raw bytes
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value or None
        elif name == "retry" and value.isascii() and value.isdigit():
            # isdigit() alone would accept non-ASCII digits; the spec allows 0-9 only.
            self._retry = int(value)
            self.reconnection_ms = self._retry
        # any other field name is ignored

    def _dispatch(self, out: list[SSEEvent]) -> None:
        raw = bytes(self._frame)
        self._frame.clear()
        if not self._data:
            out.append(SSEEvent(data="", raw=raw, retry=self._retry, dispatch=False))
        else:
            out.append(
                SSEEvent(
                    data="\n".join(self._data),
                    event=self._event_type or None,
                    id=self.last_event_id,
                    retry=self._retry,
                    raw=raw,
                )
            )
        self._data = []
        self._event_type = ""
        self._retry = None


def encode_event(event: SSEEvent) -> bytes:
    """Serialise an event: its ``event:``, ``id:`` and ``retry:`` lines, then one ``data:`` line
    per line of data, then the blank line that dispatches it.

    A pass-through frame (``dispatch=False``) is written as its ``raw`` bytes.
    """
    if not event.dispatch:
        return event.raw or b""
    lines: list[str] = []
    if event.event is not None:
        lines.append(f"event: {_single_line(event.event, 'event')}")
    if event.id is not None:
        lines.append(f"id: {_single_line(event.id, 'id')}")
    if event.retry is not None:
        lines.append(f"retry: {int(event.retry)}")
    # Split on every terminator the parser accepts, so a CR inside data cannot break framing.
    lines.extend(f"data: {part}" for part in _LINE_SPLIT.split(event.data))
    lines.append("\n")
    return "\n".join(lines).encode("utf-8")


def _single_line(value: str, field: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"SSE {field} field may not contain a line break: {value!r}")
    return value
