"""How strongly a prompt asks the model to write out its chain of thought.

Distillers want the reasoning, not the answer: their prompts ask to "think step by step", to
"show the full reasoning", to reconstruct the reasoning behind a given answer, or to grade
answers against a rubric with a justification. ``PatternScorer`` (the default) recognises those
requests with weighted patterns, in English and, for the commonest phrasings, in Chinese,
Spanish, French, German, Portuguese, Russian, Japanese and Korean. It is deterministic, needs no
model and costs a few microseconds per kilobyte of prompt (every expression starts with a
literal, so the engine skips through text that does not contain it).

The score of a prompt is ``1 - prod(1 - weight)`` over the patterns it matches (each pattern
counts once), so it stays in [0, 1) and grows with independent evidence.

A model-backed classifier plugs in as any object with ``async def score(text) ->
ElicitationScore`` (setting ``signals.scorer = "module:factory"``). It runs on the request
path: give it a tight timeout of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parser  # type: ignore[attr-defined]
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ElicitationScore:
    """A prompt's chain-of-thought elicitation score (0-1) and the patterns it matched."""

    score: float = 0.0
    patterns: tuple[str, ...] = ()


class Scorer(Protocol):
    """Scores one prompt's text (system/developer instructions and the last user turn)."""

    async def score(self, text: str) -> ElicitationScore: ...


@dataclass(frozen=True, slots=True)
class Pattern:
    """One kind of elicitation: its name, weight and expressions (on lower-case text).

    Every expression starts with a literal, which lets the regular-expression engine skip
    through a long text at memchr speed: a prompt without the literal costs almost nothing.
    On short texts one call of the expressions joined (``combined``) is cheaper than one
    call each, so ``matches`` picks by length.

    ``literals`` (``of`` fills it) are texts every match of some expression starts with, one
    or more per expression: a short text that holds none of them cannot match, and ``in``
    finds that out faster than the engine, which tries every alternative of ``combined`` at
    every position (most prompts hold no literal of most patterns: 11.2 µs a 120-character
    prompt for the seven default patterns, 7.6 µs with the literals looked for first). A long
    text's searches, one expression each, skip to their literal as fast as ``in`` would.
    Empty: the expressions are searched on every short text.
    """

    name: str
    weight: float
    regexes: tuple[re.Pattern[str], ...]
    combined: re.Pattern[str]
    literals: tuple[str, ...] = ()

    @classmethod
    def of(cls, name: str, weight: float, *expressions: str | list[str]) -> Pattern:
        flat: list[str] = []
        for expression in expressions:
            flat.extend([expression] if isinstance(expression, str) else expression)
        combined = re.compile("|".join(f"(?:{e})" for e in flat))
        regexes = tuple(re.compile(e) for e in flat)
        return cls(name, weight, regexes, combined, gate_literals(regexes))

    def matches(self, lowered: str) -> bool:
        if len(lowered) <= SHORT_TEXT:
            literals = self.literals
            if literals:
                for literal in literals:
                    if literal in lowered:
                        break
                else:
                    return False
            return self.combined.search(lowered) is not None
        return any(regex.search(lowered) for regex in self.regexes)


#: Texts up to this many characters are searched with each pattern's joined expression.
SHORT_TEXT = 400


def leading_literal(regex: re.Pattern[str]) -> str:
    """The text every match of ``regex`` starts with ("" when it has none: it starts with a
    class, a group or an alternation, or ignores case)."""
    parsed = sre_parser.parse(regex.pattern, regex.flags)
    if parsed.state.flags & re.IGNORECASE:
        return ""
    chars = []
    for op, value in parsed:
        if op is not sre_constants.LITERAL:
            break  # a quantifier binds the literal before it: the engine parses it as one item
        chars.append(chr(value))
    return "".join(chars)


def gate_literals(regexes: Iterable[re.Pattern[str]]) -> tuple[str, ...]:
    """Texts of which every match of one of ``regexes`` holds at least one: each one's
    leading literal, less those that hold a shorter one; ``()`` when one has none."""
    literals = []
    for regex in regexes:
        literal = leading_literal(regex)
        if not literal:
            return ()
        literals.append(literal)
    unique = sorted(set(literals), key=len)
    kept: list[str] = []
    for literal in unique:
        if not any(shorter in literal for shorter in kept):
            kept.append(literal)
    return tuple(kept)


def _each(prefixes: str, rest: str) -> list[str]:
    """One expression per literal prefix: ``_each("a|b", "x")`` is ``["ax", "bx"]``."""
    return [re.escape(prefix) + rest for prefix in prefixes.split("|")]


_REASONING_NOUNS = (
    r"(?:reasoning|thinking|thought process|thoughts|working|work|logic|rationale|derivation|"
    r"chain[\s-]of[\s-]thought|steps)"
)
_ANSWER = r"(?:answer|solution|result|conclusion)"

DEFAULT_PATTERNS: tuple[Pattern, ...] = (
    Pattern.of(
        "step_by_step",
        0.45,
        r"step[\s-]*by[\s-]*step",
        "one step at a time",
        "paso a paso",
        "étape par étape",
        "etape par etape",
        r"schritt f[üu]r schritt",
        "passo a passo",
        "шаг за шагом",
        "一步一步",
        "一步步",
        "逐步",
        "ステップバイステップ",
        "段階的に",
        "단계별로",
    ),
    Pattern.of(
        "show_reasoning",
        0.5,
        _each(
            "show|explain|describe|write out|write down|walk me through|give|include|reveal|"
            "share|tell me|output|print|provide|detail|display",
            r"\s+(?:me\s+|us\s+)?(?:all\s+)?(?:of\s+)?(?:your|the|its|every|each)\s+"
            r"(?:full\s+|complete\s+|entire\s+|detailed\s+|internal\s+|hidden\s+|raw\s+|"
            r"step[\s-]by[\s-]step\s+)?" + _REASONING_NOUNS,
        ),
        "思考过程",
        "推理过程",
        "推理步骤",
        "解题思路",
        "思考過程",
        r"muestra tu razonamiento",
        r"explica tu razonamiento",
        r"montre[sz]? (?:ton|votre) raisonnement",
        r"explique[sz]? (?:ton|votre) raisonnement",
        r"zeige? (?:deinen|ihren) (?:denkweg|gedankengang|l[öo]sungsweg)",
        r"покажи (?:ход |свои )?рассуждени",
    ),
    Pattern.of(
        "chain_of_thought",
        0.45,
        r"chain[\s-]of[\s-]thoughts?",
        r"cot (?:reasoning|prompt|prompting|style|format|steps)",
        r"scratch\s?pad",
        r"<\s*/?\s*(?:thinking|think|reasoning|scratchpad|thought)\s*>",
        "inner monologue",
        r"think(?:ing)? (?:out loud|aloud)",
    ),
    Pattern.of(
        "reconstruct_reasoning",
        0.55,
        _each(
            "reasoning|steps|logic|rationale|derivation|thought process",
            r"\s+(?:behind|leading to|that leads? to|that led to|for|to reach|to arrive at)\s+"
            r"(?:this|the|that|each|a given|the given|these)\s+(?:final\s+|correct\s+)?" + _ANSWER,
        ),
        _each(
            "given|here is|here's|knowing",
            r"\s+(?:the\s+)?(?:final\s+|correct\s+)?(?:answer|solution)[^.?!\n]{0,80}?"
            r"(?:explain|derive|justify|reconstruct|show|reasoning|steps)",
        ),
        _each(
            "correct|final|right|expected|reference",
            r"\s+(?:answer|solution|result)\s+(?:is|was|=|:)[^.?!\n]{0,80}?"
            r"(?:explain|derive|justify|reconstruct|show)",
        ),
        _each("work|reason", r"(?:ing)?\s+backwards?"),
    ),
    Pattern.of(
        "rubric_grading",
        0.35,
        "rubric",
        _each(
            "grade|score|rate|evaluate|assess",
            r"\s+(?:the|this|each|these|every|following)\s+(?:candidate\s+|student\s+|model\s+)?"
            r"(?:response|answer|solution|essay|output|completion)s?",
        ),
        r"on a scale (?:of|from) \d+ to \d+",
    ),
    Pattern.of(
        "think_first",
        0.3,
        _each("think|reason", r"\s+(?:carefully|hard|deeply|thoroughly|it through|through)"),
        r"before (?:answering|you answer|responding|giving)[^.?!\n]{0,20}(?:think|reason|explain)",
        r"let'?s think",
        "take a deep breath",
    ),
    Pattern.of(
        "all_steps",
        0.35,
        _each(
            "list|include|write|output|number|enumerate|show",
            r"(?: out| down)?\s+(?:all|every|each)\s+(?:of\s+)?(?:the\s+|your\s+)?"
            r"(?:intermediate\s+)?(?:steps?|calculations?|derivations?)",
        ),
        r"intermediate (?:steps|calculations|results)",
    ),
)


class PatternScorer:
    """The built-in scorer: weighted patterns, deterministic, no model."""

    def __init__(self, patterns: Iterable[Pattern] = DEFAULT_PATTERNS) -> None:
        self.patterns = tuple(patterns)

    def score_text(self, text: str) -> ElicitationScore:
        """The score of ``text``, synchronously (what ``score`` awaits)."""
        if not text:
            return ElicitationScore()
        lowered = text.lower()
        matched: list[str] = []
        remaining = 1.0
        for pattern in self.patterns:
            if pattern.matches(lowered):
                matched.append(pattern.name)
                remaining *= 1.0 - pattern.weight
        return ElicitationScore(round(1.0 - remaining, 4), tuple(matched))

    async def score(self, text: str) -> ElicitationScore:
        return self.score_text(text)
