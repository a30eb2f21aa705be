"""``gatekeeper subjects …``: API-key subjects in the file or Redis store (docs/api-teams.md).

A new key is printed once, alone on stdout (``KEY=$(gatekeeper subjects add …)``), and stored
only as its SHA-256; ``list`` and ``show`` never print a key, only the first characters of its
hash. Which store: ``--file`` or ``--redis``, else the ``[identity]`` section of ``--config``
(or ``GATEKEEPER_CONFIG``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from gatekeeper.cli._options import config_option, json_option
from gatekeeper.contract import KycLevel
from gatekeeper.errors import ConfigurationError
from gatekeeper.identity.stores import SubjectRecord, hash_api_key
from gatekeeper.offline.identity.admin import (
    FileSubjectAdmin,
    RedisSubjectAdmin,
    SubjectAdmin,
    new_api_key,
)

T = TypeVar("T")


def _store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = config_option(
        "TOML configuration whose [identity] names the store (default: GATEKEEPER_CONFIG)."
    )(command)
    command = click.option(
        "--file",
        "file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="A subjects file (TOML, JSON or YAML).",
    )(command)
    command = click.option("--redis", "redis_url", default=None, help="A Redis URL.")(command)
    command = click.option(
        "--prefix", default=None, help="Key prefix in Redis (default: identity.redis_prefix)."
    )(command)
    return command


def _admin(
    config: Path | None, file: Path | None, redis_url: str | None, prefix: str | None
) -> tuple[SubjectAdmin, float]:
    """The store to manage, and how long running processes may take to see a change."""
    from gatekeeper.settings import Settings

    if file is not None and redis_url is not None:
        raise click.UsageError("--file and --redis name two stores: give one")
    ident = Settings.load(config).identity if (config or not (file or redis_url)) else None
    delay = ident.cache_seconds if ident is not None else 5.0
    if redis_url is not None or (file is None and ident is not None and ident.store == "redis"):
        url = redis_url or (ident.redis_url if ident else None)
        if not url:
            raise click.UsageError("identity.store = redis needs identity.redis_url (or --redis)")
        default_prefix = ident.redis_prefix if ident is not None else "gk:subject:"
        return RedisSubjectAdmin(url, prefix or default_prefix), delay
    path = file or (ident.subjects_file if ident is not None else None)
    if path is None:
        raise click.UsageError("name a store: --file PATH, --redis URL, or --config FILE")
    return FileSubjectAdmin(path), delay


def _run(admin: SubjectAdmin, work: Callable[[SubjectAdmin], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            return await work(admin)
        finally:
            await admin.aclose()

    try:
        return asyncio.run(go())
    except ConfigurationError as exc:
        _fail(exc)


def _fail(exc: ConfigurationError) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


def _missing(admin: SubjectAdmin, subject_id: str) -> ConfigurationError:
    return ConfigurationError(f"no subject {subject_id!r} in {admin.where}")


def _public(record: SubjectRecord) -> dict[str, Any]:
    """What may be shown of a subject: its attributes and a short prefix of its key's hash."""
    doc = record.model_dump(mode="json", exclude={"key", "key_sha256"})
    doc["key"] = f"sha256:{str(record.key_sha256)[:12]}..."
    if record.key is not None:
        doc["key"] += " (stored in clear: rotate it)"
    return doc


@click.group()
def subjects() -> None:
    """Add, list, show, flag, revoke and rotate API-key subjects (file or Redis store)."""


@subjects.command("add")
@click.argument("subject_id")
@click.option("--tier", default="free", show_default=True)
@click.option(
    "--kyc-level",
    type=click.Choice([level.value for level in KycLevel]),
    default="none",
    show_default=True,
)
@click.option("--org", default=None)
@click.option("--account-created", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--flag", "flags", multiple=True, help="A flag (repeat for several).")
@click.option("--payment-fingerprint", default=None)
@_store_options
def add_cmd(
    subject_id: str,
    tier: str,
    kyc_level: str,
    org: str | None,
    account_created: Any,
    flags: tuple[str, ...],
    payment_fingerprint: str | None,
    **store: Any,
) -> None:
    """Add a subject with a new key; the key is printed once, alone on stdout."""
    admin, _ = _admin(**store)
    key = new_api_key()
    created: date | None = account_created.date() if account_created is not None else None
    record = SubjectRecord(
        id=subject_id,
        org=org,
        tier=tier,
        kyc_level=KycLevel(kyc_level),
        account_created=created,
        flags=list(flags),
        payment_fingerprint=payment_fingerprint,
        key_sha256=hash_api_key(key),
    )

    async def work(a: SubjectAdmin) -> None:
        if any(r.id == subject_id for r in await a.records()):
            raise ConfigurationError(f"subject {subject_id!r} exists: rotate its key instead")
        await a.add(record)

    _run(admin, work)
    click.echo(f"added {subject_id} ({tier}, kyc {kyc_level}) to {admin.where}", err=True)
    click.echo("its API key, shown this once (only its SHA-256 is stored):", err=True)
    click.echo(key)


async def _record(admin: SubjectAdmin, subject_id: str) -> SubjectRecord:
    """The store's (first) record of ``subject_id``; a ``ConfigurationError`` if it has none."""
    for record in await admin.records():
        if record.id == subject_id:
            return record
    raise _missing(admin, subject_id)


@subjects.command("list")
@json_option("One JSON object per line.")
@_store_options
def list_cmd(as_json: bool, **store: Any) -> None:
    """List subjects (never their keys)."""
    admin, _ = _admin(**store)
    records = _run(admin, lambda a: a.records())
    for record in records:
        doc = _public(record)
        if as_json:
            click.echo(json.dumps(doc))
        else:
            created = doc["account_created"] or "-"
            flags = ",".join(doc["flags"]) or "-"
            org = doc["org"] or "-"
            click.echo(
                f"{doc['id']}\t{org}\t{doc['tier']}\t{doc['kyc_level']}\t{created}\t{flags}"
                f"\t{doc['key']}"
            )


@subjects.command("show")
@click.argument("subject_id")
@_store_options
def show_cmd(subject_id: str, **store: Any) -> None:
    """Show one subject's attributes as JSON (never its key)."""
    admin, _ = _admin(**store)
    found = [r for r in _run(admin, lambda a: a.records()) if r.id == subject_id]
    if not found:
        _fail(_missing(admin, subject_id))
    for record in found:
        click.echo(json.dumps(_public(record), indent=2))


@subjects.command("flag")
@click.argument("subject_id")
@click.argument("flags", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Take the flags off instead of adding them.")
@_store_options
def flag_cmd(subject_id: str, flags: tuple[str, ...], remove: bool, **store: Any) -> None:
    """Add flags to a subject (or take them off with --remove), e.g. a reviewer clearing an
    evaluation harness: ``gatekeeper subjects flag eval-1 distillation_exempt``."""
    admin, delay = _admin(**store)

    async def work(a: SubjectAdmin) -> list[str]:
        current = list((await _record(a, subject_id)).flags)
        if remove:
            updated = [f for f in current if f not in flags]
        else:
            updated = current + [f for f in dict.fromkeys(flags) if f not in current]
        await a.set_flags(subject_id, updated)
        return updated

    updated = _run(admin, work)
    click.echo(
        f"{subject_id} in {admin.where} now has flags: {', '.join(updated) or '(none)'}; "
        f"running processes see it within identity.cache_seconds ({delay:g} s), and every "
        "decision logs the subject's flags (input.subject.flags)",
        err=True,
    )


@subjects.command("revoke")
@click.argument("subject_id")
@_store_options
def revoke_cmd(subject_id: str, **store: Any) -> None:
    """Remove a subject and every key it has."""
    admin, delay = _admin(**store)
    removed = _run(admin, lambda a: a.remove(subject_id))
    if not removed:
        _fail(_missing(admin, subject_id))
    click.echo(
        f"revoked {subject_id} ({removed} key{'s' if removed > 1 else ''}) in {admin.where}; "
        f"running processes refuse it within identity.cache_seconds ({delay:g} s)",
        err=True,
    )


@subjects.command("rotate")
@click.argument("subject_id")
@_store_options
def rotate_cmd(subject_id: str, **store: Any) -> None:
    """Give a subject a new key (printed once) and retire its old ones."""
    admin, delay = _admin(**store)
    key = new_api_key()

    async def work(a: SubjectAdmin) -> None:
        record = await _record(a, subject_id)
        fresh = record.model_copy(update={"key": None, "key_sha256": hash_api_key(key)})
        await a.remove(subject_id)
        await a.add(fresh)

    _run(admin, work)
    click.echo(
        f"rotated {subject_id} in {admin.where}; the old key stops working within "
        f"identity.cache_seconds ({delay:g} s). The new key, shown this once:",
        err=True,
    )
    click.echo(key)
