"""SSE framing: the WHATWG parsing rules, any chunk boundary, raw bytes, the encoder."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.reasoning.sse import SSEDecoder, SSEEvent, SSEEventTooLarge, encode_event


@dataclass
class Case:
    """Bytes fed in the given chunks; the dispatched events as (event, data, id) tuples."""

    chunks: list[bytes]
    expected: list[tuple[str | None, str, str | None]]
    passthrough: int = 0  # frames that dispatch nothing
    retry: list[int | None] = field(default_factory=list)


CASES = {
    "lf": Case([b"data: a\n\n"], [(None, "a", None)]),
    "crlf": Case([b"data: a\r\n\r\n"], [(None, "a", None)]),
    "lone-cr": Case([b"data: a\r\rdata: b\r\r"], [(None, "a", None), (None, "b", None)]),
    # The LF completing a CRLF that ended a frame is passed on as a frame of its own.
    "crlf-split-across-chunks": Case(
        [b"data: a\r", b"\n\r", b"\ndata: b\r\n", b"\r\n"],
        [(None, "a", None), (None, "b", None)],
        passthrough=1,
    ),
    "mixed-terminators": Case([b"data: a\r\ndata: b\rdata: c\n\n"], [(None, "a\nb\nc", None)]),
    "multi-line-data-joined-with-lf": Case(
        [b"data: one\ndata: two\ndata: three\n\n"], [(None, "one\ntwo\nthree", None)]
    ),
    "one-leading-space-stripped": Case([b"data:  two spaces\n\n"], [(None, " two spaces", None)]),
    "no-space-after-colon": Case([b"data:x\n\n"], [(None, "x", None)]),
    "field-without-colon-is-empty-value": Case([b"data\ndata\n\n"], [(None, "\n", None)]),
    "empty-data-line-dispatches-empty-string": Case([b"data:\n\n"], [(None, "", None)]),
    "only-one-trailing-lf-stripped": Case([b"data: a\ndata:\n\n"], [(None, "a\n", None)]),
    "colon-in-value-kept": Case([b"data: a: b\n\n"], [(None, "a: b", None)]),
    "event-type": Case(
        [b"event: add\ndata: 1\n\ndata: 2\n\n"], [("add", "1", None), (None, "2", None)]
    ),
    "empty-event-type-is-message": Case([b"event:\ndata: 1\n\n"], [(None, "1", None)]),
    "event-without-data-dispatches-nothing": Case(
        [b"event: ping\n\ndata: x\n\n"], [(None, "x", None)], passthrough=1
    ),
    "comment-lines-ignored": Case([b": keep-alive\ndata: a\n: more\n\n"], [(None, "a", None)]),
    "comment-only-frame-passes-through": Case(
        [b": OPENROUTER PROCESSING\n\ndata: a\n\n"], [(None, "a", None)], passthrough=1
    ),
    "blank-lines-between-events": Case([b"\n\n\ndata: a\n\n"], [(None, "a", None)], passthrough=3),
    "unknown-field-ignored": Case([b"foo: bar\ndata: a\n\n"], [(None, "a", None)]),
    "field-names-are-case-sensitive": Case([b"Data: x\ndata: a\n\n"], [(None, "a", None)]),
    "id-persists-across-events": Case(
        [b"id: 7\ndata: a\n\ndata: b\n\n"], [(None, "a", "7"), (None, "b", "7")]
    ),
    "empty-id-resets": Case(
        [b"id: 7\ndata: a\n\nid\ndata: b\n\n"], [(None, "a", "7"), (None, "b", None)]
    ),
    "id-with-nul-ignored": Case(
        [b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"], [(None, "a", "1"), (None, "b", "1")]
    ),
    "retry-digits-set": Case([b"retry: 1500\ndata: a\n\n"], [(None, "a", None)], retry=[1500]),
    "retry-non-digits-ignored": Case(
        [b"retry: 15x\ndata: a\n\nretry: \xd9\xa3\ndata: b\n\n"],
        [(None, "a", None), (None, "b", None)],
        retry=[None, None],
    ),
    "leading-bom-ignored": Case([b"\xef\xbb\xbfdata: a\n\n"], [(None, "a", None)]),
    "bom-split-across-chunks": Case([b"\xef", b"\xbb", b"\xbfdata: a\n\n"], [(None, "a", None)]),
    "bom-before-field-name-only-once": Case(
        [b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n"], [(None, "b", None)], passthrough=1
    ),
    "utf8-split-across-chunks": Case(
        [b"data: \xe2\x82", b"\xac and \xf0\x9f", b"\x98\x80\n\n"], [(None, "€ and 😀", None)]
    ),
    "invalid-utf8-replaced": Case([b"data: \xff\n\n"], [(None, "\ufffd", None)]),
    "unterminated-final-event-discarded": Case([b"data: a\n\ndata: b\n"], [(None, "a", None)]),
    "unterminated-final-line-discarded": Case([b"data: a\n\ndata: b"], [(None, "a", None)]),
}


def run(chunks: list[bytes], **options: int) -> tuple[list[SSEEvent], SSEDecoder]:
    decoder = SSEDecoder(**options)
    frames: list[SSEEvent] = []
    for chunk in chunks:
        frames += decoder.feed(chunk)
    frames += decoder.close()
    return frames, decoder


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_parses_like_the_spec(case: Case) -> None:
    frames, _ = run(case.chunks)
    dispatched = [f for f in frames if f.dispatch]
    assert [(f.event, f.data, f.id) for f in dispatched] == case.expected
    assert len(frames) - len(dispatched) == case.passthrough
    if case.retry:
        assert [f.retry for f in dispatched] == case.retry


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_byte_by_byte_gives_the_same_events(case: Case) -> None:
    whole = b"".join(case.chunks)
    frames, _ = run([whole[i : i + 1] for i in range(len(whole))])
    expected, _ = run([whole])
    assert [(f.event, f.data, f.id) for f in frames if f.dispatch] == [
        (f.event, f.data, f.id) for f in expected if f.dispatch
    ]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_raw_bytes_add_up_to_the_complete_input(case: Case) -> None:
    frames, decoder = run(case.chunks)
    whole = b"".join(case.chunks)
    raw = b"".join(f.raw or b"" for f in frames)
    assert raw + whole[len(raw) :] == whole
    assert len(raw) + decoder.discarded_bytes == len(whole)


def test_unterminated_event_is_counted_as_discarded() -> None:
    _, decoder = run([b"data: a\n\ndata: partial"])
    assert decoder.discarded_bytes == len(b"data: partial")


def test_feed_after_close_is_an_error() -> None:
    decoder = SSEDecoder()
    decoder.close()
    with pytest.raises(RuntimeError):
        decoder.feed(b"data: a\n\n")


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([b"data: " + b"x" * 200 + b"\n\n"], id="one-event"),
        pytest.param([b"data: " + b"x" * 50] * 5, id="unterminated-line-across-chunks"),
        pytest.param([b"data: x\n" * 40], id="many-data-lines"),
    ],
)
def test_oversized_event_raises(chunks: list[bytes]) -> None:
    decoder = SSEDecoder(max_event_bytes=128)
    with pytest.raises(SSEEventTooLarge) as info:
        for chunk in chunks:
            decoder.feed(chunk)
    assert info.value.status == 502
    assert "128" in str(info.value)


def test_oversized_event_reports_the_events_completed_before_it() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    with pytest.raises(SSEEventTooLarge) as info:
        decoder.feed(b"data: small\n\ndata: " + b"x" * 100 + b"\n\n")
    assert [e.data for e in info.value.completed] == ["small"]


def test_limit_is_per_event_not_per_stream() -> None:
    frames, _ = run([b"data: " + b"x" * 40 + b"\n\n"] * 50, max_event_bytes=64)
    assert len(frames) == 50


ENCODE = {
    "data-only": (SSEEvent(data="a"), b"data: a\n\n"),
    "event-line-kept": (
        SSEEvent(data="{}", event="message_start"),
        b"event: message_start\ndata: {}\n\n",
    ),
    "multi-line-data": (SSEEvent(data="a\nb"), b"data: a\ndata: b\n\n"),
    "cr-in-data-cannot-break-framing": (SSEEvent(data="a\rb"), b"data: a\ndata: b\n\n"),
    "empty-data": (SSEEvent(data=""), b"data: \n\n"),
    "leading-space-survives": (SSEEvent(data=" x"), b"data:  x\n\n"),
    "id-and-retry": (SSEEvent(data="a", id="7", retry=10), b"id: 7\nretry: 10\ndata: a\n\n"),
    "passthrough-frame-is-raw": (
        SSEEvent(data="", raw=b": keep-alive\n\n", dispatch=False),
        b": keep-alive\n\n",
    ),
}


@pytest.mark.parametrize(("event", "wire"), ENCODE.values(), ids=ENCODE.keys())
def test_encodes(event: SSEEvent, wire: bytes) -> None:
    assert encode_event(event) == wire


@pytest.mark.parametrize("field_name", ["event", "id"])
def test_encoder_refuses_line_breaks_in_single_line_fields(field_name: str) -> None:
    with pytest.raises(ValueError, match=field_name):
        encode_event(
            SSEEvent(data="a", event="x\ny")
            if field_name == "event"
            else SSEEvent(data="a", id="x\ny")
        )


_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=20
)


@given(
    events=st.lists(
        st.tuples(
            st.none() | _text.filter(lambda s: s != ""), st.lists(_text, min_size=1, max_size=3)
        ),
        min_size=1,
        max_size=5,
    ),
    newline=st.sampled_from([b"\n", b"\r", b"\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
@settings(max_examples=200, deadline=None)
def test_encode_then_parse_round_trips_under_any_chunking(
    events: list[tuple[str | None, list[str]]], newline: bytes, cuts: list[int]
) -> None:
    originals = [SSEEvent(data="\n".join(lines), event=name) for name, lines in events]
    wire = b"".join(encode_event(e) for e in originals).replace(b"\n", newline)
    points = sorted({min(c, len(wire)) for c in cuts})
    chunks = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    frames, _ = run(chunks)
    assert [(f.event, f.data) for f in frames if f.dispatch] == [
        (e.event, e.data) for e in originals
    ]
    assert b"".join(f.raw or b"" for f in frames) == wire
