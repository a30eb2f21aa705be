"""Read a response body with the official SDKs, the way a client application would.

The body is served by an ``httpx2.MockTransport`` (the HTTP client both SDKs use), so the SDKs'
own SSE parsers, stream helpers and models do the reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
import openai
from anthropic.types import Message
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from tests.reasoning.recorded import Recording

_MESSAGES: Any = [{"role": "user", "content": "hi"}]


@dataclass
class Final:
    """What a client ends up with: the visible answer, and the whole final object as JSON."""

    text: str
    kinds: list[str]
    dump: dict[str, Any]


def http_client(body: bytes, content_type: str, status: int = 200) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"content-type": content_type}, content=body)

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def openai_client(body: bytes, content_type: str, status: int = 200) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="test",
        base_url="http://upstream.test/v1",
        http_client=http_client(body, content_type, status),
        max_retries=0,
    )


def anthropic_client(body: bytes, content_type: str, status: int = 200) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="test",
        base_url="http://upstream.test",
        http_client=http_client(body, content_type, status),
        max_retries=0,
    )


def read_final(recording: Recording, body: bytes) -> Final:
    """The final completion / response / message the SDK assembles from ``body``."""
    content_type = recording.content_type.decode()
    dialect = recording.dialect.name
    if dialect == "openai_chat":
        client = openai_client(body, content_type)
        completion: ChatCompletion
        if recording.streamed:
            with client.chat.completions.stream(model="m", messages=_MESSAGES) as stream:
                completion = stream.get_final_completion()
        else:
            completion = client.chat.completions.create(model="m", messages=_MESSAGES)
        message = completion.choices[0].message
        return Final(
            message.content or "",
            [c.type for c in message.tool_calls or []],
            completion.model_dump(mode="json"),
        )
    if dialect == "openai_responses":
        client = openai_client(body, content_type)
        response: Response
        if recording.streamed:
            with client.responses.stream(model="m", input="hi") as stream:
                response = stream.get_final_response()
        else:
            response = client.responses.create(model="m", input="hi")
        return Final(
            response.output_text,
            [item.type for item in response.output],
            response.model_dump(mode="json"),
        )
    client_a = anthropic_client(body, content_type)
    message_a: Message
    if recording.streamed:
        with client_a.messages.stream(model="m", max_tokens=8, messages=_MESSAGES) as stream_a:
            message_a = stream_a.get_final_message()
    else:
        message_a = client_a.messages.create(model="m", max_tokens=8, messages=_MESSAGES)
    return Final(
        "".join(block.text for block in message_a.content if block.type == "text"),
        [block.type for block in message_a.content],
        message_a.model_dump(mode="json"),
    )
