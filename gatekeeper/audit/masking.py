"""Masking decision events before they are written: OPA's ``system.log.mask`` operations.

Rules come from settings (``audit.mask``) and from the policy's data
(``data.gatekeeper.config.log.mask``); each is one of

- a string JSON Pointer (RFC 6901) → the value there is removed; listed in ``erased``;
- ``{"op": "remove", "path": ptr}`` → the same;
- ``{"op": "upsert", "path": ptr, "value": v}`` → the value is set (created when the parent
  exists); listed in ``masked``;
- ``{"op": "hash", "path": ptr}`` → the value is replaced by ``hmac-sha256:<hex>``, a keyed hash
  a reviewer who holds the key can match without seeing the value; listed in ``masked``. Without
  a configured key the value is removed instead (fail closed).

Pointers start with ``/input`` or ``/result`` (as in OPA); array indices are allowed; operations
on locations that do not exist are ignored. After the rules, every object member whose name is
a known secret field (``authorization``, ``x-api-key``, ``password``, ``document_number``…) is
removed wherever it occurs in ``input`` or ``result``, unless a rule already masked it: secrets
are never written in clear, even when no rule names them.

Last, any string longer than ``max_field_chars`` (``audit.max_field_chars``), anywhere in the
event, is cut to that length and ends with ``…[truncated: N chars]``; its JSON Pointer is listed
in ``truncated``. A client cannot make one record weigh 500 KB with a long model name.

The scan and the cap walk the event only when its JSON says they may have something to do (a
secret name in it, a run of bytes without a quote longer than the cap). The writer hands them
the line the chain is about to write (``apply_rules``, then ``scan`` from ``Chain.seal``): one
serialisation per event, made again only for an event they changed.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gatekeeper.audit.canonical import canonical_json

log = logging.getLogger("gatekeeper.audit")

DEFAULT_SECRET_FIELDS: tuple[str, ...] = (
    "access_token",
    "api-key",
    "api_key",
    "apikey",
    "authorization",
    "client_secret",
    "cookie",
    "document_number",
    "id_document_number",
    "id_token",
    "kyc_document_number",
    "passport_number",
    "password",
    "proxy-authorization",
    "refresh_token",
    "secret",
    "set-cookie",
    "ssn",
    "tax_id",
    "x-api-key",
)
_ROOTS = ("input", "result")
_OPS = ("remove", "upsert", "hash")


@dataclass(frozen=True, slots=True)
class MaskRule:
    """One masking operation at one JSON Pointer."""

    op: str
    path: str
    tokens: tuple[str, ...]
    value: Any = None


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """The reference tokens of an RFC 6901 pointer that starts at ``/input`` or ``/result``."""
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        raise ValueError(f"mask path {pointer!r} is not a JSON Pointer (it must start with '/')")
    tokens = tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/"))
    if tokens[0] not in _ROOTS or len(tokens) < 2:
        raise ValueError(f"mask path {pointer!r} must point inside /input or /result")
    return tokens


def pointer_of(tokens: Iterable[str]) -> str:
    """The JSON Pointer for ``tokens`` (``~`` and ``/`` escaped)."""
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def parse_rule(raw: Any) -> MaskRule:
    """One rule as written in settings or policy data; raises ``ValueError`` when malformed."""
    if isinstance(raw, str):
        return MaskRule("remove", raw, parse_pointer(raw))
    if not isinstance(raw, dict):
        raise ValueError(f"mask rule {raw!r} is neither a JSON Pointer nor an object")
    op, path = raw.get("op"), raw.get("path")
    if op not in _OPS:
        raise ValueError(f"mask rule {raw!r}: op must be one of {', '.join(_OPS)}")
    unknown = set(raw) - {"op", "path", "value"}
    if unknown:
        raise ValueError(f"mask rule {raw!r}: unknown keys {', '.join(sorted(unknown))}")
    if not isinstance(path, str):
        raise ValueError(f"mask rule {raw!r}: path must be a JSON Pointer string")
    if op == "upsert" and "value" not in raw:
        raise ValueError(f"mask rule {raw!r}: upsert needs a value")
    return MaskRule(op, path, parse_pointer(path), raw.get("value"))


def parse_rules(raw: Any) -> list[MaskRule]:
    """A list of rules; raises ``ValueError`` naming the first bad one."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("mask rules must be a list")
    return [parse_rule(item) for item in raw]


def keyed_hash(key: bytes, value: Any) -> str:
    """``hmac-sha256:<hex>`` of a value: a string's UTF-8 bytes, anything else's canonical JSON."""
    return KeyedHasher(key)(value)


class KeyedHasher:
    """HMAC-SHA256 (RFC 2104) with the padded key states computed once: hashing one value costs
    two hash copies instead of a fresh HMAC set-up, which dominates for short values."""

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, value: Any) -> str:
        data = value.encode() if isinstance(value, str) else canonical_json(value)
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return "hmac-sha256:" + outer.hexdigest()


class Masker:
    """Applies the settings' rules, the policy's rules and the secret-field scan to events."""

    def __init__(
        self,
        rules: Sequence[MaskRule] = (),
        *,
        secret_fields: Iterable[str] = DEFAULT_SECRET_FIELDS,
        hmac_key: bytes | None = None,
        policy_rules: Callable[[], Any] | None = None,
        max_field_chars: int | None = None,
    ) -> None:
        self.rules = list(rules)
        self.max_field_chars = max_field_chars
        self.secret_fields = frozenset(f.lower() for f in secret_fields)
        # Most events hold no secret field: one regex over their JSON says so, far faster than
        # walking every object. A secret *name* inside a string value is escaped (\"name\":),
        # so it cannot match; a match only means "walk and look". It reads the JSON backwards:
        # ``"name":`` reversed is ``:"eman"``, whose two-byte literal start lets the regex
        # engine skip to the few hundred ends of keys instead of trying at every quote (7
        # against 12 µs over a stack event).
        names = _alternation(sorted(f.encode()[::-1] for f in self.secret_fields))
        self._probe = re.compile(b':"' + names + b'"') if self.secret_fields else None
        self.hmac_key = hmac_key
        self._hasher = KeyedHasher(hmac_key) if hmac_key is not None else None
        self._policy_rules = policy_rules
        self._policy_raw: Any = None
        self._policy_parsed: list[MaskRule] = []

    def describe(self) -> dict[str, Any]:
        """Everything but the policy's rules, as JSON (a writer process builds its own masker
        from it: ``Masker.described``); its ``hmac_key`` is the key itself, in hex."""
        return {
            "rules": [_raw_rule(rule) for rule in self.rules],
            "secret_fields": sorted(self.secret_fields),
            "hmac_key": self.hmac_key.hex() if self.hmac_key is not None else None,
            "max_field_chars": self.max_field_chars,
            "policy": self._policy_rules is not None,
        }

    @classmethod
    def described(cls, spec: dict[str, Any], policy_rules: Callable[[], Any] | None) -> Masker:
        """The masker ``describe`` gave ``spec`` of; ``policy_rules`` returns the raw rules of
        the policy (as ``policy_source`` does in the process that describes it)."""
        key = spec.get("hmac_key")
        return cls(
            parse_rules(spec.get("rules")),
            secret_fields=spec.get("secret_fields") or (),
            hmac_key=bytes.fromhex(key) if isinstance(key, str) else None,
            policy_rules=policy_rules if spec.get("policy") else None,
            max_field_chars=spec.get("max_field_chars"),
        )

    def policy_source(self) -> Any:
        """The policy's raw mask rules now (the same object until a new policy revision)."""
        return self._policy_rules() if self._policy_rules is not None else None

    def _current_policy_rules(self) -> list[MaskRule]:
        if self._policy_rules is None:
            return []
        raw = self._policy_rules()
        if raw is not self._policy_raw:  # a new policy revision: parse its rules once
            self._policy_raw = raw
            parsed = []
            for item in raw if isinstance(raw, list) else []:
                try:
                    parsed.append(parse_rule(item))
                except ValueError as exc:
                    log.error("ignoring a policy mask rule: %s", exc)
            self._policy_parsed = parsed
        return self._policy_parsed

    def batch_rules(self) -> list[MaskRule]:
        """The rules to mask with now: the settings' and the active policy revision's. The
        writer asks once per batch and passes them to ``apply``, which otherwise asks per
        event."""
        return [*self.rules, *self._current_policy_rules()]

    def apply(self, event: dict[str, Any], rules: Sequence[MaskRule] | None = None) -> None:
        """Mask ``event`` in place, extending its ``erased`` and ``masked`` lists."""
        masked = self.apply_rules(event, rules)
        self.scan(event, _dumps(event), masked)

    def apply_rules(
        self, event: dict[str, Any], rules: Sequence[MaskRule] | None = None
    ) -> frozenset[str]:
        """The first part of ``apply``: the settings' and the policy's rules; the pointers
        they masked (which the secret-field scan leaves as the rules set them)."""
        if rules is None:
            rules = self.batch_rules()
        if not rules:
            return frozenset(event.get("masked") or ())
        erased: list[str] = list(event.get("erased") or ())
        masked: list[str] = list(event.get("masked") or ())
        for rule in rules:
            self._apply_rule(event, rule, erased, masked)
        if erased:
            event["erased"] = erased
        if masked:
            event["masked"] = masked
        return frozenset(masked)

    def may_hold_secret(self, dumped: bytes) -> bool:
        """Whether the JSON ``dumped`` has a member named like a secret field (any case)."""
        probe = self._probe
        return probe is not None and probe.search(dumped.lower()[::-1]) is not None

    def scan(self, event: dict[str, Any], dumped: bytes | None, masked: frozenset[str]) -> bool:
        """The second part of ``apply``: the secret-field scan and the field cap, given the
        event's JSON as it is now (``dumped``: any serialisation of it, such as the line the
        chain is about to write; ``None``: unknown, walk to be safe). True if it changed the
        event (its JSON must be made again).

        One serialisation tells both whether to walk: no secret name in it, and no string
        longer than the cap. Removing secrets only shortens the event. The chain's own
        ``gatekeeper.prev_hash`` is never cut (the line may already hold it)."""
        changed = False
        if self._probe is not None and (dumped is None or self.may_hold_secret(dumped)):
            found: list[tuple[str, ...]] = []
            for root in _ROOTS:
                if root in event:
                    self._find_secrets(event[root], [root], found, masked)
            if found:
                erased: list[str] = list(event.get("erased") or ())
                for tokens in found:
                    _delete(_writable_parent(event, tokens), tokens[-1])
                    erased.append(pointer_of(tokens))
                event["erased"] = erased
                changed = True
        limit = self.max_field_chars
        if limit is not None and (dumped is None or _may_hold_longer(dumped, limit)):
            changed = self._cap(event, limit) or changed
        return changed

    @staticmethod
    def _cap(event: dict[str, Any], limit: int) -> bool:
        """Cut strings longer than ``limit`` (see the module), listing them in ``truncated``;
        True if one was cut."""
        truncated: list[str] = list(event.get("truncated") or ())
        count = len(truncated)
        stack: list[tuple[Any, list[str]]] = [(event, [])]
        while stack:
            node, path = stack.pop()
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                if key == "prev_hash" and path == ["gatekeeper"]:
                    continue  # the chain's own field, set before the cap when sealing
                if isinstance(value, str) and len(value) > limit:
                    node[key] = f"{value[:limit]}…[truncated: {len(value)} chars]"
                    truncated.append(pointer_of([*path, str(key)]))
                elif isinstance(value, dict | list):
                    stack.append((value, [*path, str(key)]))
        if len(truncated) > count:
            event["truncated"] = truncated
            return True
        return False

    def _apply_rule(
        self, event: dict[str, Any], rule: MaskRule, erased: list[str], masked: list[str]
    ) -> None:
        parent: Any = event
        for token in rule.tokens[:-1]:
            parent = _child(parent, token)
            if parent is _MISSING or not isinstance(parent, dict | list):
                return
        last = rule.tokens[-1]
        exists = _child(parent, last) is not _MISSING
        if rule.op == "upsert":
            if not exists and not isinstance(parent, dict):
                return
            _set(_writable_parent(event, rule.tokens), last, rule.value)
            masked.append(rule.path)
        elif exists and rule.op == "hash" and self._hasher is not None:
            target = _writable_parent(event, rule.tokens)
            _set(target, last, self._hasher(_child(target, last)))
            masked.append(rule.path)
        elif exists:
            _delete(_writable_parent(event, rule.tokens), last)
            erased.append(rule.path)

    def _find_secrets(
        self, node: Any, path: list[str], found: list[tuple[str, ...]], keep: frozenset[str]
    ) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                path.append(key)
                if key.lower() in self.secret_fields:
                    if pointer_of(path) not in keep:
                        found.append(tuple(path))
                else:
                    self._find_secrets(value, path, found, keep)
                path.pop()
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, dict | list):
                    path.append(str(index))
                    self._find_secrets(item, path, found, keep)
                    path.pop()


_MISSING = object()


def _raw_rule(rule: MaskRule) -> dict[str, Any]:
    """A rule as ``parse_rule`` reads it."""
    raw: dict[str, Any] = {"op": rule.op, "path": rule.path}
    if rule.op == "upsert":
        raw["value"] = rule.value
    return raw


def _alternation(words: list[bytes]) -> bytes:
    """A regular expression matching exactly ``words``, written as a prefix tree
    (``a(?:ccess_token|pi_key)``): Python's ``re`` tries the alternatives of a flat list one by
    one at every position, so a tree matches an event's JSON in about 60% of the time."""
    groups: dict[bytes, list[bytes]] = {}
    ends = False
    for word in words:
        if word:
            groups.setdefault(word[:1], []).append(word[1:])
        else:
            ends = True
    branches = [re.escape(first) + _alternation(rest) for first, rest in sorted(groups.items())]
    if not branches:
        return b""
    if ends:
        return b"(?:" + b"|".join(branches) + b")?"
    return branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"


def _may_hold_longer(dumped: bytes, limit: int) -> bool:
    """Whether the JSON ``dumped`` may hold a string longer than ``limit`` characters: False
    only when none can (then the event need not be walked: a 5 KB event costs a walk of about
    60 µs, this about 1 µs).

    Every character of a string takes at least one byte of its JSON, and a string's bytes lie
    between two quotes. Without a backslash in ``dumped`` every quote is a string's start or
    end, so a string longer than ``limit`` is a run of more than ``limit`` bytes without a
    quote, and such a run covers a whole aligned block of ``(limit + 1) // 2`` bytes: one
    ``find`` per block says there is none. With backslashes, each escaped backslash and
    escaped quote is first replaced by two bytes that are neither, and every piece between
    two quotes is measured.
    """
    if len(dumped) <= limit:
        return False
    if b"\\" not in dumped:
        block = (limit + 1) // 2
        find = dumped.find
        return any(
            find(b'"', start, start + block) < 0
            for start in range(0, len(dumped) - block + 1, block)
        )
    plain = dumped.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    return max(map(len, plain.split(b'"'))) > limit


def _dumps(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return None


def _writable_parent(event: dict[str, Any], tokens: tuple[str, ...]) -> Any:
    """The container holding ``tokens[-1]``, after copying every container on the way.

    The event's input may be shared with the request that built it (metrics and traces read it
    too), so masking never changes a container in place: it changes fresh copies.
    """
    node: Any = event
    for token in tokens[:-1]:
        child = _child(node, token)
        copy = dict(child) if isinstance(child, dict) else list(child)
        _set(node, token, copy)
        node = copy
    return node


def _set(node: Any, token: str, value: Any) -> None:
    if isinstance(node, dict):
        node[token] = value
    else:
        node[int(token)] = value


def _delete(node: Any, token: str) -> None:
    if isinstance(node, dict):
        del node[token]
    else:
        del node[int(token)]


def _child(node: Any, token: str) -> Any:
    if isinstance(node, dict):
        return node.get(token, _MISSING)
    if isinstance(node, list) and token.isdigit():
        index = int(token)
        return node[index] if index < len(node) else _MISSING
    return _MISSING
