"""Building the decision log, its sinks, masking and signing from ``AuditSettings``."""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekeeper.audit.keys import Signer
from gatekeeper.audit.lock import MAX_WORKER_SLOTS, ChainLocked, worker_chain_path
from gatekeeper.audit.log import DecisionLog
from gatekeeper.audit.masking import DEFAULT_SECRET_FIELDS, Masker, parse_rules
from gatekeeper.audit.remote import HttpUploadSink, RedisStreamSink, RemoteSink
from gatekeeper.audit.sinks import JsonlFileSink, Sink, StdoutSink
from gatekeeper.audit.witness import WitnessError, WitnessPublisher, open_witness
from gatekeeper.errors import ConfigurationError

if TYPE_CHECKING:
    from gatekeeper.settings import AuditSettings

POLICY_MASK_PATH = ("gatekeeper", "config", "log", "mask")

log = logging.getLogger("gatekeeper.audit")


def keys_dir(audit: AuditSettings) -> Path:
    """Where the public keys of checkpoint signers are kept."""
    return audit.keyring or audit.path.parent / "keys"


def build_decision_log(
    audit: AuditSettings, policy_data: Callable[[], Any] | None = None
) -> DecisionLog:
    """The decision log named by ``audit``; ``policy_data`` returns the current policy's data
    (its ``gatekeeper.config.log.mask`` rules apply). Raises ``ConfigurationError``."""
    signer = Signer.from_files(
        audit.signing_key or keys_dir(audit) / "checkpoint-signing.pem", keys_dir(audit)
    )
    masker = Masker(
        parse_rules(audit.mask),
        secret_fields=DEFAULT_SECRET_FIELDS if audit.secret_fields is None else audit.secret_fields,
        hmac_key=_hmac_key(audit),
        policy_rules=(lambda: policy_mask_rules(policy_data())) if policy_data else None,
        max_field_chars=audit.max_field_chars,
    )
    if policy_data is not None:
        try:
            parse_rules(policy_mask_rules(policy_data()))
        except ValueError as exc:
            raise ConfigurationError(f"policy data {'.'.join(POLICY_MASK_PATH)}: {exc}") from exc
    local: list[Sink] = [StdoutSink()] if audit.stdout else []
    remote: list[RemoteSink] = []
    if audit.redis.url:
        remote.append(
            RedisStreamSink(
                audit.redis.url,
                audit.redis.stream,
                maxlen=audit.redis.maxlen,
                **_remote_options(audit.redis),
            )
        )
    if audit.http.url:
        remote.append(
            HttpUploadSink(
                audit.http.url,
                headers=audit.http.headers,
                upload_size_limit_bytes=audit.http.upload_size_limit_bytes,
                timeout_seconds=audit.http.timeout_seconds,
                **_remote_options(audit.http),
            )
        )
    witness = None
    if audit.witness:
        try:
            witness = WitnessPublisher(open_witness(audit.witness))
        except WitnessError as exc:
            raise ConfigurationError(f"audit.witness: {exc}") from exc
    return DecisionLog(
        open_chain_file(audit),
        queue_size=audit.queue_size,
        linger_seconds=audit.linger_seconds,
        sinks=local,
        remote=remote,
        masker=masker,
        signer=signer,
        checkpoint_every=audit.checkpoint_every,
        checkpoint_seconds=audit.checkpoint_seconds,
        labels=audit.labels,
        witness=witness,
        sealer=audit.sealer,
    )


def open_chain_file(audit: AuditSettings) -> JsonlFileSink:
    """The JSONL sink of the chain this process writes, its lock held (``gatekeeper.audit.lock``).

    ``audit.path`` when its lock is free; else, with ``on_locked = "own_chain"``, the lowest
    worker slot beside it whose lock is free (a restarted worker continues that chain). Raises
    ``ChainLocked`` (with ``fail``) or ``ConfigurationError``."""
    held: ChainLocked | None = None
    for slot in range(MAX_WORKER_SLOTS + 1):
        path = worker_chain_path(audit.path, slot)
        try:
            sink = JsonlFileSink(
                path, rotate_bytes=audit.rotate_bytes, rotate_seconds=audit.rotate_seconds
            )
        except ChainLocked as exc:
            if audit.on_locked == "fail":
                raise
            held = held or exc
            continue
        if held is None:
            log.info("decision log: process %d writes the chain %s", os.getpid(), path)
        else:
            log.info(
                "decision log: %s is written by process %s; process %d writes a chain of its "
                "own, %s",
                audit.path,
                held.holder if held.holder is not None else "(pid unknown)",
                os.getpid(),
                path,
            )
        return sink
    raise ConfigurationError(
        f"decision log {audit.path}: every worker slot up to .w{MAX_WORKER_SLOTS} is held by "
        "another process"
    )


def policy_mask_rules(data: Any) -> Any:
    """The mask rules in a policy's data (``data.gatekeeper.config.log.mask``), or ``None``."""
    for key in POLICY_MASK_PATH:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def policy_data_of(engine: Any) -> Any:
    """The data document of an engine that exposes its policy source (the embedded one)."""
    source = getattr(engine, "source", None)
    return getattr(source, "data", None)


def is_durable_path(patterns: list[str], path: str) -> bool:
    """Whether ``path`` matches one of the ``durable_paths`` patterns (fnmatch, case-sensitive)."""
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


def _remote_options(section: Any) -> dict[str, Any]:
    return {
        "buffer_events": section.buffer_events,
        "batch_events": section.batch_events,
        "flush_seconds": section.flush_seconds,
        "max_backoff_seconds": section.max_backoff_seconds,
    }


def _hmac_key(audit: AuditSettings) -> bytes | None:
    if audit.hmac_key is not None:
        return audit.hmac_key.get_secret_value().encode()
    if audit.hmac_key_file is not None:
        try:
            return audit.hmac_key_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigurationError(f"audit.hmac_key_file: {exc}") from exc
    return None
