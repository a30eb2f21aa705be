"""The deterministic "model" behind demo-reasoner: text in, reasoning and an answer out.

Nothing here knows about HTTP or any wire dialect; the dialect modules turn a request into a
:class:`Prompt` and render the :class:`Completion` that :func:`think` returns.

Tokens are whitespace-separated words (``len(text.split())``) everywhere, so a test can recompute
every usage number from the texts it received.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import orjson

from gatekeeper.wire import text_leaves

# Not a secret: it only lets the demo server recognise thinking blocks it signed itself, the way
# a real provider rejects edited or foreign thinking blocks.
DEMO_SIGNING_KEY = b"gatekeeper-demo-reasoner/v1"

_SIGNATURE_PREFIX = b"demo-reasoner:v1:"
_WORD_WITH_SPACE = re.compile(r"\S+\s*")
_TERM = re.compile(r"[A-Za-z0-9][\w'-]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ARITHMETIC = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/\N{MULTIPLICATION SIGN}])\s*(-?\d+(?:\.\d+)?)")

# Question words skipped when picking the "key term" the reasoning talks about.
_FILLER = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "can",
        "could",
        "does",
        "how",
        "is",
        "it",
        "of",
        "or",
        "please",
        "should",
        "the",
        "this",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
    }
)

# Keys whose string values are identifiers or opaque blobs, not text the model would read.
_NOT_TEXT = frozenset(
    {
        "role",
        "type",
        "id",
        "name",
        "tool_use_id",
        "tool_call_id",
        "call_id",
        "signature",
        "encrypted_content",
        "data",
        "cache_control",
        "status",
    }
)


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the client offered: its name and the JSON schema of its arguments."""

    name: str
    schema: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The output of a tool the model called on an earlier turn."""

    name: str
    content: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model makes instead of answering."""

    id: str
    name: str
    arguments: Mapping[str, Any]

    @property
    def arguments_json(self) -> str:
        """The arguments as the compact JSON text the wire formats carry."""
        return orjson.dumps(self.arguments).decode()

    @property
    def tokens(self) -> int:
        """Output tokens spent on the call: the name plus the argument text."""
        return 1 + count_tokens(self.arguments_json)


@dataclass(frozen=True, slots=True)
class Prompt:
    """Everything :func:`think` reads, already pulled out of a request by a dialect module."""

    question: str
    prompt_tokens: int
    key: str
    reason: bool = True
    max_tokens: int | None = None
    tools: tuple[Tool, ...] = ()
    tool_result: ToolResult | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """What the model produced. ``answer`` is empty when it calls a tool or ran out of tokens."""

    reasoning: str
    answer: str
    tool_call: ToolCall | None
    truncated: bool
    prompt_tokens: int

    @property
    def reasoning_tokens(self) -> int:
        """Tokens of reasoning, counted in the output tokens like real providers do."""
        return count_tokens(self.reasoning)

    @property
    def output_tokens(self) -> int:
        """All generated tokens: reasoning, answer and any tool call."""
        call = self.tool_call.tokens if self.tool_call is not None else 0
        return self.reasoning_tokens + count_tokens(self.answer) + call


def count_tokens(text: str) -> int:
    """The demo tokenizer: whitespace-separated words."""
    return len(text.split())


def count_prompt_tokens(value: Any) -> int:
    """Tokens in every piece of text inside a request structure (messages, system, input)."""
    return sum(map(count_tokens, text_leaves(value, _NOT_TEXT)))


def split_deltas(text: str, words: int = 3) -> list[str]:
    """Cut ``text`` into stream deltas of a few words each; they join back to ``text`` exactly."""
    pieces = _WORD_WITH_SPACE.findall(text)
    if not pieces:
        return [text] if text else []
    pieces[0] = text[: len(text) - len(text.lstrip())] + pieces[0]
    return ["".join(pieces[i : i + words]) for i in range(0, len(pieces), words)]


def split_text(text: str, size: int = 16) -> list[str]:
    """Cut text with no useful word boundaries (JSON arguments) into fixed-size deltas."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def summary_parts(reasoning: str) -> list[str]:
    """Split reasoning at a sentence boundary into two summary parts joined by one space."""
    sentences = re.split(r"(?<=[.!?])\s+", reasoning) if reasoning else []
    half = (len(sentences) + 1) // 2
    return [part for part in (" ".join(sentences[:half]), " ".join(sentences[half:])) if part]


def sign(thinking: str) -> str:
    """The signature of a thinking block: an HMAC of its text under the demo key."""
    mac = hmac.new(DEMO_SIGNING_KEY, thinking.encode(), hashlib.sha256).digest()
    return base64.b64encode(_SIGNATURE_PREFIX + mac).decode()


def verify(thinking: str, signature: str) -> bool:
    """Whether ``signature`` was issued by :func:`sign` for exactly this text."""
    return hmac.compare_digest(sign(thinking).encode(), signature.encode())


def seal(reasoning: str) -> str:
    """A stand-in for OpenAI's ``encrypted_content``: the text encrypted under the demo key.

    It does not reveal the text, it is deterministic, and :func:`unseal` gives the text back
    only if not one byte was changed, so the demo can reject replayed reasoning that is not its
    own, like the real API ("could not be verified").
    """
    data = reasoning.encode()
    tag = hmac.new(DEMO_SIGNING_KEY, b"sealed:" + data, hashlib.sha256).digest()[:16]
    return "gAAAAB" + base64.urlsafe_b64encode(tag + _xor(data, tag)).decode()


def unseal(token: str) -> str | None:
    """The text :func:`seal` sealed into ``token``, or ``None`` if it is not a valid seal."""
    if not token.startswith("gAAAAB"):
        return None
    try:
        raw = base64.urlsafe_b64decode(token[6:].encode())
    except ValueError:
        return None
    tag, body = raw[:16], raw[16:]
    data = _xor(body, tag)
    expected = hmac.new(DEMO_SIGNING_KEY, b"sealed:" + data, hashlib.sha256).digest()[:16]
    if len(tag) != 16 or not hmac.compare_digest(tag, expected):
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def _xor(data: bytes, nonce: bytes) -> bytes:
    stream = bytearray()
    counter = 0
    while len(stream) < len(data):
        block = DEMO_SIGNING_KEY + b"stream:" + nonce + counter.to_bytes(4, "big")
        stream += hashlib.sha256(block).digest()
        counter += 1
    return bytes(a ^ b for a, b in zip(data, stream, strict=False))


def stable_id(prefix: str, key: str, salt: str = "") -> str:
    """An id derived from the request, so the same request always gets the same ids."""
    return prefix + hashlib.sha256(f"{key}/{salt}".encode()).hexdigest()[:24]


def think(prompt: Prompt) -> Completion:
    """Produce the deterministic reasoning and answer (or tool call) for ``prompt``."""
    question = " ".join(prompt.question.split())
    quoted = textwrap.shorten(question, 120, placeholder="...") if question else "(empty)"
    terms = [t for t in _TERM.findall(question) if t.lower() not in _FILLER]
    term = max(terms, key=len) if terms else "your message"
    call = _tool_call(prompt, question, term)
    plan, answer = _plan_and_answer(prompt, quoted, term, call)
    reasoning = _reasoning(quoted, count_tokens(question), term, plan) if prompt.reason else ""
    return _fit(reasoning, "" if call else answer, call, prompt)


def _tool_call(prompt: Prompt, question: str, term: str) -> ToolCall | None:
    if not prompt.tools or prompt.tool_result is not None:
        return None
    tool = prompt.tools[0]
    arguments = _arguments(tool.schema, question, term)
    return ToolCall(stable_id("", prompt.key, "tool"), tool.name, arguments)


def _plan_and_answer(
    prompt: Prompt, quoted: str, term: str, call: ToolCall | None
) -> tuple[str, str]:
    result = prompt.tool_result
    if result is not None:
        said = textwrap.shorten(" ".join(result.content.split()), 200, placeholder="...")
        return (
            f'the {result.name} tool returned "{said}", so I will answer from that.',
            f'The {result.name} tool returned: {said}. That answers "{quoted}".',
        )
    if call is not None:
        return f"the {call.name} tool can answer this, so I will call it first.", ""
    worked = _arithmetic(quoted)
    if worked is not None:
        return (
            f"compute {worked}.",
            f"{worked}. I worked it out in four short steps and checked the result.",
        )
    return (
        f"recall what I know about {term} and keep the answer short.",
        f'Here is a short answer about "{term}": demo-reasoner thought it through in four '
        "steps. This is a deterministic demo reply, not a real model.",
    )


def _reasoning(quoted: str, words: int, term: str, plan: str) -> str:
    return " ".join(
        [
            f'The user asks: "{quoted}".',
            "I will work through it in four numbered steps.",
            f"Step 1: restate the question, which has {words} words.",
            f'Step 2: pick out the key term, "{term}".',
            f"Step 3: {plan}",
            "Step 4: check the draft answer for mistakes before replying.",
        ]
    )


def _fit(reasoning: str, answer: str, call: ToolCall | None, prompt: Prompt) -> Completion:
    """Apply the output token limit: reasoning first, then the answer; a cut drops the call."""
    full = Completion(reasoning, answer, call, False, prompt.prompt_tokens)
    limit = prompt.max_tokens
    if limit is None or full.output_tokens <= limit:
        return full
    kept = reasoning.split()[:limit]
    rest = answer.split()[: max(0, limit - len(kept))]
    return Completion(" ".join(kept), " ".join(rest), None, True, prompt.prompt_tokens)


def _arithmetic(question: str) -> str | None:
    match = _ARITHMETIC.search(question)
    if match is None:
        return None
    left, op, right = Fraction(match[1]), match[2], Fraction(match[3])
    if op == "/" and right == 0:
        return None
    if op == "/":
        value = left / right
    else:
        value = left + right if op == "+" else left - right if op == "-" else left * right
    shown = str(value.numerator) if value.denominator == 1 else format(float(value), ".6g")
    return f"{match[1]} {op} {match[3]} = {shown}"


def _arguments(schema: Mapping[str, Any], question: str, term: str) -> dict[str, Any]:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    required = schema.get("required")
    names = [n for n in properties if not isinstance(required, list) or n in required]
    return {name: _value(properties[name], question, term) for name in names}


def _value(spec: Any, question: str, term: str) -> Any:
    spec = spec if isinstance(spec, Mapping) else {}
    enum = spec.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = spec.get("type")
    if kind in ("integer", "number"):
        number = _NUMBER.search(question)
        return (int(float(number[0])) if kind == "integer" else float(number[0])) if number else 1
    defaults: dict[str, Any] = {"boolean": True, "array": [], "object": {}, "null": None}
    if isinstance(kind, str) and kind in defaults:
        return defaults[kind]
    return question or term
