"""Structured logs: a JSON formatter, a redacting text formatter, and the access log.

gatekeeper never puts a credential in a log message on purpose (it logs subject ids, never API
keys). The formatters add a second line of defence: every message, argument and traceback is
passed through ``redact``, which masks bearer tokens, ``x-api-key`` values, key-like query
parameters, passwords in URLs, and any value listed as a known secret (the proxy's
``upstream_api_key``).

``logging_config`` returns a ``logging.config.dictConfig`` document for gatekeeper's and
uvicorn's loggers, which ``gatekeeper proxy`` passes to uvicorn.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any

import orjson

_PATTERNS = (
    # Authorization: Bearer <token> (and Basic, which carries a password).
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s,;'\"]+"), r"\1\2[redacted]"),
    # x-api-key: <key>, api_key=<key>, "api-key": "<key>", token=..., secret=..., password=...
    (
        re.compile(
            r"(?i)\b((?:x[-_])?api[-_]?key|access[-_]?token|token|secret|password|passwd)"
            r"(['\"]?\s*[:=]\s*['\"]?)[^\s&,;'\"]+"
        ),
        r"\1\2[redacted]",
    ),
    # scheme://user:password@host
    (re.compile(r"(://[^/\s:@]*:)[^@\s/]+@"), r"\1[redacted]@"),
)

#: Attributes every ``LogRecord`` has; anything else was passed with ``extra=`` and is a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials masked (patterns above, and each of ``secrets`` verbatim)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class _Redacting:
    secrets: tuple[str, ...] = ()

    def _clean(self, text: str) -> str:
        return redact(text, self.secrets)


class RedactingFormatter(_Redacting, logging.Formatter):
    """A text formatter whose output is passed through ``redact``."""

    def __init__(self, fmt: str | None = None, *, secrets: Iterable[str] = (), **kw: Any) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s: %(message)s", **kw)
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        return self._clean(super().format(record))


class JsonFormatter(_Redacting, logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, then every field
    passed with ``extra=`` (e.g. ``decision_id``), and ``exception`` when there is one."""

    def __init__(self, *, secrets: Iterable[str] = (), **kw: Any) -> None:
        super().__init__(**kw)
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _rfc3339_ms(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": self._clean(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = self._clean(value) if isinstance(value, str) else value
        if record.exc_info:
            document["exception"] = self._clean(self.formatException(record.exc_info))
        elif record.exc_text:
            document["exception"] = self._clean(record.exc_text)
        raw = orjson.dumps(document, default=lambda v: self._clean(str(v)))
        return raw.decode()


def _rfc3339_ms(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def logging_config(
    *, json_logs: bool, level: str = "INFO", secrets: Iterable[str] = ()
) -> dict[str, Any]:
    """A ``dictConfig`` document: gatekeeper's and uvicorn's loggers to stderr, JSON or text,
    redacted. uvicorn's own access log is left off (``access_log`` gives one line per request
    with the decision id instead)."""
    factory = JsonFormatter if json_logs else RedactingFormatter
    formatter = {"()": factory, "secrets": list(secrets)}
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "gatekeeper",
        "stream": "ext://sys.stderr",
    }
    loggers = {
        name: {"handlers": ["stderr"], "level": level, "propagate": False}
        for name in ("gatekeeper", "uvicorn", "uvicorn.error")
    }
    loggers["uvicorn.access"] = {"handlers": ["stderr"], "level": "WARNING", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gatekeeper": formatter},
        "handlers": {"stderr": handler},
        "loggers": loggers,
    }


def configure_logging(*, json_logs: bool, level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Apply ``logging_config`` to this process (for apps that embed the middleware)."""
    import logging.config

    logging.config.dictConfig(logging_config(json_logs=json_logs, level=level, secrets=secrets))
