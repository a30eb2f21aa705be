"""Managing subjects in the file and Redis stores (``gatekeeper subjects …``).

New keys come from ``secrets`` (``gk-`` and 43 URL-safe characters: 256 bits) and are stored
only as their SHA-256 (``key_sha256``); the key itself is returned once, to be shown once.
Existing files that hold keys in clear (``key = "…"``, the demo's) keep working and are kept as
they are, except the subject rotated or revoked.

A subjects file is rewritten whole (to a temporary file, then renamed over it): its leading
comment lines are kept, comments between subjects are not. Running processes re-read it within
``identity.cache_seconds``; Redis changes are seen within the same time (the subject cache).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import ValidationError
from redis.asyncio import Redis

from gatekeeper.errors import ConfigurationError
from gatekeeper.identity.stores import RedisSubjectStore, SubjectRecord, _read_records

_HEX64 = re.compile(r"[0-9a-f]{64}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def new_api_key() -> str:
    """A fresh API key: ``gk-`` and 256 random bits, URL-safe."""
    return "gk-" + secrets.token_urlsafe(32)


class SubjectAdmin(Protocol):
    """A store's subjects, to list and change (never their keys in clear)."""

    where: str

    async def records(self) -> list[SubjectRecord]: ...

    async def add(self, record: SubjectRecord) -> None: ...

    async def remove(self, subject_id: str) -> int: ...

    async def set_flags(self, subject_id: str, flags: list[str]) -> int:
        """Replace the flags of every record of ``subject_id`` in one write; how many."""
        ...

    async def aclose(self) -> None: ...


class FileSubjectAdmin:
    """Subjects in a TOML, JSON or YAML file (the file store's)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    async def records(self) -> list[SubjectRecord]:
        return _read_records(self.path) if self.path.exists() else []

    async def add(self, record: SubjectRecord) -> None:
        doc = self._document()
        entry = record.model_dump(mode="json", exclude={"key", "key_sha256"}, exclude_none=True)
        entry["key_sha256"] = record.key_sha256
        doc["subjects"].append(entry)
        self._write(doc)

    async def remove(self, subject_id: str) -> int:
        doc = self._document()
        kept = [
            e for e in doc["subjects"] if not (isinstance(e, dict) and e.get("id") == subject_id)
        ]
        removed = len(doc["subjects"]) - len(kept)
        if removed:
            doc["subjects"] = kept
            self._write(doc)
        return removed

    async def set_flags(self, subject_id: str, flags: list[str]) -> int:
        doc = self._document()
        changed = 0
        for entry in doc["subjects"]:
            if isinstance(entry, dict) and entry.get("id") == subject_id:
                entry["flags"] = list(flags)
                changed += 1
        if changed:
            self._write(doc)  # one rename: a reader sees the subject before or after, never gone
        return changed

    async def aclose(self) -> None:
        return None

    def _document(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"subjects": []}
        _read_records(self.path)  # refuses a damaged file before anything is changed
        raw = self.path.read_bytes()
        if self.path.suffix == ".toml":
            doc: Any = tomllib.loads(raw.decode())
        elif self.path.suffix in {".yaml", ".yml"}:
            doc = yaml.safe_load(raw)
        else:
            doc = json.loads(raw)
        assert isinstance(doc, dict)
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        if self.path.suffix == ".toml":
            text = _header(self.path) + _toml(doc)
            if tomllib.loads(text) != _drop_none(doc):
                raise ConfigurationError(f"{self.path}: cannot write these subjects as TOML")
        elif self.path.suffix in {".yaml", ".yml"}:
            text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
        else:
            text = json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
        try:
            [SubjectRecord.model_validate(e) for e in doc["subjects"]]
        except ValidationError as exc:
            raise ConfigurationError(f"{self.path}: the result would not load:\n{exc}") from exc
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            if self.path.exists():
                os.chmod(tmp, self.path.stat().st_mode & 0o777)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class RedisSubjectAdmin:
    """Subjects in Redis under ``<prefix><sha256>`` (the Redis store's); listing scans them."""

    def __init__(self, url: str, prefix: str) -> None:
        self.store = RedisSubjectStore(url, prefix=prefix, cache_seconds=0)
        self.prefix = prefix
        self.where = f"redis ({prefix}*)"
        self._redis: Redis = Redis.from_url(url)

    async def records(self) -> list[SubjectRecord]:
        names = [
            name
            async for name in self._redis.scan_iter(match=self.prefix + "*", count=1000)
            if _HEX64.fullmatch(name.decode()[len(self.prefix) :])
        ]
        records: list[SubjectRecord] = []
        for start in range(0, len(names), 500):
            for raw in await self._redis.mget(names[start : start + 500]):
                if raw is not None:
                    records.append(SubjectRecord.model_validate_json(raw))
        return sorted(records, key=lambda r: r.id)

    async def add(self, record: SubjectRecord) -> None:
        await self.store.put(record)

    async def remove(self, subject_id: str) -> int:
        gone = [r for r in await self.records() if r.id == subject_id]
        for record in gone:
            assert record.key_sha256 is not None
            await self.store.delete(record.key_sha256)
        return len(gone)

    async def set_flags(self, subject_id: str, flags: list[str]) -> int:
        found = [r for r in await self.records() if r.id == subject_id]
        for record in found:
            await self.store.put(record.model_copy(update={"flags": list(flags)}))
        return len(found)

    async def aclose(self) -> None:
        await self._redis.aclose()
        await self.store.aclose()


def _header(path: Path) -> str:
    """The file's leading comment lines, kept across rewrites."""
    if not path.exists():
        return "# Subjects written by `gatekeeper subjects`: keys are stored as SHA-256 only.\n\n"
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines) + "\n\n" if lines else ""


def _toml(doc: dict[str, Any]) -> str:
    out = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in doc.items() if k != "subjects"]
    if not doc["subjects"]:
        out.append("subjects = []")
    for entry in doc["subjects"]:
        if out:
            out.append("")
        out.append("[[subjects]]")
        out.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items() if v is not None)
    return "\n".join(out) + "\n"


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(value: str) -> str:
    # JSON's escapes are TOML's, except that TOML also wants DEL escaped.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = (f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    raise ConfigurationError(f"cannot write {type(value).__name__} values in a subjects file")


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value
