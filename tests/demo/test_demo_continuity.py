"""demo-reasoner enforces the real APIs' rules for reasoning sent back on later turns: Responses
items replayed as input (stateless use), and DeepSeek's reasoning_content on tool-call turns."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.responses import Response

from gatekeeper.offline.demo._reasoner import seal, unseal

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
RESPONSES_TOOLS: Any = [{"type": "function", "name": "weather", "parameters": WEATHER}]
CHAT_TOOLS: Any = [{"type": "function", "function": {"name": "weather", "parameters": WEATHER}}]
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


def first_turn(client: openai.OpenAI, **extra: Any) -> Response:
    return client.responses.create(
        model="demo-reasoner", input=[QUESTION], tools=RESPONSES_TOOLS, **extra
    )


def replay(first: Response, *, without: str = "", **changes: Any) -> list[Any]:
    """The first turn's output as input, then the tool's output."""
    items: list[Any] = [QUESTION]
    for item in first.output:
        dumped = item.model_dump(exclude_none=True)
        if item.type == "reasoning":
            dumped.update(changes)
            for key in [k for k in changes if changes[k] is None]:
                dumped.pop(key)
        if item.type != without:
            items.append(dumped)
    call = next(i for i in first.output if i.type == "function_call")
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"})
    return items


def test_sealed_reasoning_opens_only_unaltered() -> None:
    token = seal("Step 1: look outside.")
    assert unseal(token) == "Step 1: look outside."
    assert unseal(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")) is None
    assert unseal("not a seal") is None


@pytest.mark.parametrize("store", [False, True])
def test_a_full_replay_answers_from_the_tool(openai_client: openai.OpenAI, store: bool) -> None:
    first = first_turn(openai_client, store=store)
    assert [i.type for i in first.output] == ["reasoning", "function_call"]
    second = openai_client.responses.create(
        model="demo-reasoner", input=replay(first), tools=RESPONSES_TOOLS, store=store
    )
    assert "weather tool returned: Sunny" in second.output_text


def test_streamed_function_call_matches_the_json_one(openai_client: openai.OpenAI) -> None:
    whole = first_turn(openai_client)
    with openai_client.responses.stream(
        model="demo-reasoner", input=[QUESTION], tools=RESPONSES_TOOLS
    ) as stream:
        streamed = stream.get_final_response()
    # The stream helper's function call type adds ``parsed_arguments``.
    streamed_items = [i.model_dump(exclude={"parsed_arguments"}) for i in streamed.output]
    assert streamed_items == [i.model_dump() for i in whole.output]


@pytest.mark.parametrize(
    ("store", "replayed", "message"),
    [
        (True, {"without": "reasoning"}, "without its required 'reasoning' item: 'rs_"),
        (True, {"without": "function_call"}, "without its required following item"),
        (True, {"summary": None}, "Missing required parameter: 'input[1].summary'"),
        (False, {"encrypted_content": None}, "Items are not persisted when `store` is set"),
        (True, {"encrypted_content": seal("other thoughts")[:-6] + "AAAAAA"}, "could not be"),
    ],
    ids=["no-reasoning", "no-follower", "no-summary", "unstored-no-encrypted", "tampered"],
)
def test_a_broken_replay_is_refused_like_the_real_api(
    openai_client: openai.OpenAI, store: bool, replayed: dict[str, Any], message: str
) -> None:
    first = first_turn(openai_client, store=store)
    without = replayed.pop("without", "")
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(
            model="demo-reasoner",
            input=replay(first, without=without, **replayed),
            tools=RESPONSES_TOOLS,
            store=store,
        )
    assert message in caught.value.message


def test_a_stored_reasoning_item_may_come_back_without_encrypted_content(
    openai_client: openai.OpenAI,
) -> None:
    first = first_turn(openai_client)
    second = openai_client.responses.create(
        model="demo-reasoner", input=replay(first, encrypted_content=None), tools=RESPONSES_TOOLS
    )
    assert second.output_text


def _chat_history(openai_client: openai.OpenAI, keep_reasoning: bool) -> list[Any]:
    first = openai_client.chat.completions.create(
        model="demo-reasoner", messages=[QUESTION], tools=CHAT_TOOLS
    )
    message = first.choices[0].message.model_dump(exclude_none=True)
    if not keep_reasoning:
        message.pop("reasoning_content")
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    return [QUESTION, message, {"role": "tool", "tool_call_id": call.id, "content": "Sunny"}]


def test_chat_tool_turn_without_reasoning_content_is_refused(
    openai_client: openai.OpenAI,
) -> None:
    history = _chat_history(openai_client, keep_reasoning=False)
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model="demo-reasoner", messages=history, tools=CHAT_TOOLS
        )
    assert "`reasoning_content` in the thinking mode must be passed back" in caught.value.message
    quiet = openai_client.chat.completions.create(
        model="demo-reasoner",
        messages=history,
        tools=CHAT_TOOLS,
        extra_body={"thinking": {"type": "disabled"}},
    )
    assert quiet.choices[0].message.content
