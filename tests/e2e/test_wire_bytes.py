"""The bytes on the wire, not just what an SDK shows: no reasoning reaches a free client."""

from __future__ import annotations

import pytest

from tests.servers import DemoServer

QUESTION = "Is 9.11 larger than 9.8?"
REASONING_MARKERS = ("reasoning_content", '"thinking"', "thinking_delta", '"type":"reasoning"')

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": QUESTION}]}),
        ("/v1/responses", {"input": QUESTION}),
        ("/v1/messages", {"max_tokens": 256, "messages": [{"role": "user", "content": QUESTION}]}),
    ],
    ids=["chat", "responses", "messages"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_no_reasoning_byte_reaches_a_free_client(
    demo: DemoServer, path: str, body: dict[str, object], stream: bool
) -> None:
    """The raw bytes on the wire, not just what an SDK shows, carry no reasoning."""
    with demo.client() as http:
        enterprise = http.post(
            path,
            json={"model": "demo-reasoner", "stream": stream, **body},
            headers={"authorization": "Bearer gk-demo-enterprise"},
        )
        free = http.post(
            path,
            json={"model": "demo-reasoner", "stream": stream, **body},
            headers={"x-api-key": "gk-demo-free"},
        )
    assert enterprise.status_code == free.status_code == 200
    assert any(marker in enterprise.text for marker in REASONING_MARKERS)
    assert not any(marker in free.text for marker in REASONING_MARKERS)
    reasoning_words = "numbered"  # in demo-reasoner's reasoning, never in its answer
    assert reasoning_words in enterprise.text
    assert reasoning_words not in free.text
