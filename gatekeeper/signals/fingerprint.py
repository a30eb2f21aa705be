"""Behavioural fingerprints: how a subject uses the API, whatever identifiers it shows.

A campaign that gives every account its own card, organisation and network still drives all
of them from one harvester: the same share of reasoning requests, single-turn prompts of the
same length, the same ``max_tokens``, streaming and sampling parameters, the same system prompt
and tool schemas, requests at machine-regular intervals. ``request_features`` reads those
facts from one request body (cheap: no prompt text is kept, only lengths and hashes);
``Fingerprint`` accumulates them per subject; ``behaviour_keys`` turns a fingerprint into a
few locality-sensitive band keys.

Similarity index: a band key is a hash of a few *quantised* features (every band holds the
reasoning-share bucket, so a band never joins an occasional reasoner with a harvester). Two
subjects whose fingerprints are near share most quantised features and so at least one band;
the state links subjects that share a band key within the main window into behavioural clusters
with the union-find of account clusters (``ClusterIndex``): incremental, O(bands) per request,
and the cluster id derives from the smallest member, so it is stable while membership is.
A fingerprint takes part only after ``min_requests`` requests (a noisy one links nothing).

What is quantised, and how coarsely, is a granularity of the index, not a decision: how large a
behavioural cluster must be to count as evidence, and of which accounts, is the policy's.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

_VERSION = re.compile(r"[/ ]v?\d[\w.+-]*")

#: Prompt-length bins (log2 of characters, clamped).
_LENGTH_BINS = 12


@dataclass(slots=True)
class RequestFeatures:
    """The behavioural facts of one request (no text: lengths, flags and short hashes).

    Treated as immutable, but not frozen: one is made per request, and a frozen dataclass's
    ``__init__`` costs about three times as much (``Observation``)."""

    reasoning: bool = False
    single_turn: bool = True
    prompt_bin: int = 0
    max_tokens: int = 0
    stream: bool = False
    sampling: str = ""
    system: str = ""
    tools: str = ""
    ua_family: str = "-"

    def to_wire(self) -> list[Any]:
        return [
            int(self.reasoning),
            int(self.single_turn),
            self.prompt_bin,
            self.max_tokens,
            int(self.stream),
            self.sampling,
            self.system,
            self.tools,
            self.ua_family,
        ]

    @classmethod
    def from_wire(cls, raw: Any) -> RequestFeatures:
        if not isinstance(raw, list) or len(raw) != 9:
            raise ValueError("request features are a list of 9 items")
        r, single, pbin, mt, stream, sampling, system, tools, ua = raw
        if not all(isinstance(v, int) for v in (r, single, pbin, mt, stream)):
            raise ValueError("bad request features")
        if not all(isinstance(v, str) for v in (sampling, system, tools, ua)):
            raise ValueError("bad request features")
        return cls(bool(r), bool(single), pbin, mt, bool(stream), sampling, system, tools, ua)


def _short(value: Any) -> str:
    raw = value if isinstance(value, bytes) else repr(value).encode()
    return hashlib.blake2b(raw, digest_size=4).hexdigest()


@functools.lru_cache(maxsize=256)
def _repr_hash(text: str) -> str:
    # Cached by the repr, not the tuple: (1,) == (1.0,) but their reprs, and hashes, differ.
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


@functools.lru_cache(maxsize=1024)
def ua_family(user_agent: str | None) -> str:
    """``OpenAI/Python 1.54.4`` -> ``openai/python``: the client, not its version."""
    if not user_agent:
        return "-"
    head = _VERSION.sub("", user_agent.split(" (", 1)[0])
    return "/".join(head.split()[:2]).lower()[:40] or "-"


def request_features(
    document: Any, prompt_chars: int, *, reasoning: bool, user_agent: str | None
) -> RequestFeatures:
    """The features of a parsed request body of any dialect (``None`` for no body)."""
    if not isinstance(document, dict):
        return RequestFeatures(reasoning=reasoning, ua_family=ua_family(user_agent))
    turns = document.get("messages")
    if turns is None:
        turns = document.get("input")
    conversational = 0
    system: Any = document.get("system") or document.get("instructions")
    if isinstance(turns, list):
        for item in turns:
            if isinstance(item, dict):
                role = item.get("role")
                if role in ("system", "developer"):
                    system = system or item.get("content")
                elif role in ("user", "assistant", "tool"):
                    conversational += 1
    max_tokens = document.get("max_tokens") or document.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = document.get("max_output_tokens")
    tools = document.get("tools")
    names: list[str] = []
    if isinstance(tools, list):
        for tool in tools:
            if isinstance(tool, dict):
                fn = tool.get("function")
                name = fn.get("name") if isinstance(fn, dict) else tool.get("name")
                names.append(str(name))
    sampling = tuple(
        round(v, 2) if isinstance(v, (int, float)) else None
        for v in (document.get("temperature"), document.get("top_p"), document.get("top_k"))
    )
    return RequestFeatures(
        reasoning=reasoning,
        single_turn=conversational <= 1,
        prompt_bin=min(_LENGTH_BINS - 1, int(math.log2(prompt_chars + 1))),
        max_tokens=max_tokens if isinstance(max_tokens, int) else 0,
        stream=document.get("stream") is True,
        sampling=_repr_hash(repr(sampling)) if any(v is not None for v in sampling) else "",
        system=_short(system) if system else "",
        tools=_short(sorted(names)) if names else "",
        ua_family=ua_family(user_agent),
    )


class Fingerprint:
    """One subject's behaviour, accumulated over its requests since it became active."""

    __slots__ = (
        "gaps",
        "gaps_n",
        "gaps_sq",
        "hours",
        "last",
        "lengths",
        "max_tokens",
        "n",
        "reasoning",
        "single",
        "stream",
        "strings",
    )

    def __init__(self) -> None:
        self.n = 0
        self.reasoning = 0
        self.single = 0
        self.stream = 0
        #: Requests by prompt-length bin (a dict of ints: not tracked by the garbage collector,
        #: as a list would be).
        self.lengths: dict[int, int] = {}
        self.max_tokens: dict[int, int] = {}
        #: The latest sampling, system-prompt and tool-schema hashes and UA family.
        self.strings: tuple[str, str, str, str] = ("", "", "", "-")
        self.last = -1.0
        self.gaps = 0.0
        self.gaps_sq = 0.0
        self.gaps_n = 0
        self.hours = 0

    def add(self, at: float, f: RequestFeatures) -> None:
        self.n += 1
        self.reasoning += f.reasoning
        self.single += f.single_turn
        self.stream += f.stream
        lengths = self.lengths
        lengths[f.prompt_bin] = lengths.get(f.prompt_bin, 0) + 1
        counts = self.max_tokens
        if f.max_tokens in counts or len(counts) < 8:
            counts[f.max_tokens] = counts.get(f.max_tokens, 0) + 1
        self.strings = (f.sampling, f.system, f.tools, f.ua_family)
        if self.last >= 0 and at > self.last:
            gap = math.log(at - self.last + 1.0)
            self.gaps += gap
            self.gaps_sq += gap * gap
            self.gaps_n += 1
        self.last = max(self.last, at)
        self.hours |= 1 << (int(at // 3600) % 24)

    def regularity(self) -> int:
        """Inter-arrival regularity: 0 machine-regular, 1 irregular, 2 bursty (log gaps' s.d.)."""
        if self.gaps_n < 3:
            return 1
        mean = self.gaps / self.gaps_n
        spread = math.sqrt(max(0.0, self.gaps_sq / self.gaps_n - mean * mean))
        return 0 if spread < 0.35 else 1 if spread < 1.2 else 2

    def quantised(self) -> dict[str, object]:
        """The coarse features the band keys hash (a granularity, not a decision)."""
        n = self.n
        share = self.reasoning / n
        lengths = self.lengths
        return {
            "r": 0 if share < 0.5 else 1 if share < 0.9 else 2,
            "s": int(self.single * 10 // n >= 9),
            "l": max(range(_LENGTH_BINS), key=lambda b: lengths.get(b, 0)),
            "m": max(self.max_tokens, key=self.max_tokens.__getitem__),
            "t": int(self.stream * 2 >= n),
            "p": self.strings[0],
            "y": self.strings[1],
            "o": self.strings[2],
            "u": self.strings[3],
            "g": self.regularity(),
        }


#: The bands: each hashes the reasoning bucket and a few other quantised features. Subjects
#: sharing one band key are linked (LSH banding over the quantised fingerprint).
BANDS: tuple[tuple[str, ...], ...] = (
    ("r", "s", "l", "m", "t", "p"),
    ("r", "y", "o", "m", "u"),
    ("r", "l", "m", "g", "u", "t"),
)


def behaviour_keys(fingerprint: Fingerprint) -> tuple[str, ...]:
    """The band keys of a fingerprint (``behaviour:<band>:<hash>``)."""
    return _band_keys(band_values(fingerprint))


#: Every feature any band hashes, in a fixed order (the cache key of ``_band_keys``).
_BAND_FEATURES = tuple(sorted({name for band in BANDS for name in band}))
assert _BAND_FEATURES == ("g", "l", "m", "o", "p", "r", "s", "t", "u", "y")


def band_values(fp: Fingerprint) -> tuple[str, ...]:
    """``quantised``'s values as strings, in ``_BAND_FEATURES`` order, without its dict.

    The state recomputes a fingerprint's band keys on about half the requests of an active
    subject; building the dict and its twelve-call ``max`` was a third of that (a test holds
    the two equal)."""
    n = fp.n
    share = fp.reasoning / n
    lengths = fp.lengths
    counts = [lengths.get(b, 0) for b in range(_LENGTH_BINS)]
    sampling, system, tools, ua = fp.strings
    return (
        str(fp.regularity()),
        str(counts.index(max(counts))),  # the first bin of the most requests, as ``max``
        str(max(fp.max_tokens, key=fp.max_tokens.__getitem__)),
        tools,
        sampling,
        "0" if share < 0.5 else "1" if share < 0.9 else "2",
        "1" if fp.single * 10 // n >= 9 else "0",
        "1" if fp.stream * 2 >= n else "0",
        ua,
        system,
    )


_BAND_POSITIONS = tuple(tuple(_BAND_FEATURES.index(name) for name in band) for band in BANDS)


@functools.lru_cache(maxsize=4096)
def _band_keys(values: tuple[str, ...]) -> tuple[str, ...]:
    # Cached: quantised fingerprints take few distinct values (a campaign's accounts share
    # one), and three BLAKE2b digests cost more than the lookup.
    keys = []
    for i, positions in enumerate(_BAND_POSITIONS):
        joined = "\x1f".join(values[p] for p in positions)
        digest = hashlib.blake2b(joined.encode(), digest_size=8).hexdigest()
        keys.append(f"b{i}:{digest}")
    return tuple(keys)
