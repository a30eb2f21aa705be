"""``gatekeeper subjects``: keys generated, shown once, stored as SHA-256 only, never listed."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekeeper.cli.main import cli
from gatekeeper.contract import Subject
from gatekeeper.identity import FileSubjectStore, RedisSubjectStore, hash_api_key

DEMO_SUBJECTS = Path(__file__).resolve().parents[2] / "examples" / "demo" / "subjects.toml"


def in_file(path: Path, key: str) -> Subject | None:
    return asyncio.run(FileSubjectStore(path).lookup(key))


def in_redis(url: str, key: str) -> Subject | None:
    async def lookup() -> Subject | None:
        store = RedisSubjectStore(url, prefix="gk:test-cli:", cache_seconds=0)
        try:
            return await store.lookup(key)
        finally:
            await store.aclose()

    return asyncio.run(lookup())


def run(*args: str) -> tuple[str, str]:
    result = CliRunner().invoke(cli, ["subjects", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout.strip(), result.stderr


@pytest.mark.parametrize("suffix", ["toml", "json", "yaml"])
def test_file_store_lifecycle(tmp_path: Path, suffix: str) -> None:
    store = ["--file", str(tmp_path / f"subjects.{suffix}")]
    key, note = run("add", "team-a", "--tier", "pro", "--kyc-level", "government_id", *store)
    assert key.startswith("gk-") and len(key) > 40 and "shown this once" in note
    text = (tmp_path / f"subjects.{suffix}").read_text()
    assert key not in text and hash_api_key(key) in text
    listed, _ = run("list", *store)
    shown, _ = run("show", "team-a", *store)
    assert "team-a" in listed and "government_id" in shown
    assert key not in listed + shown
    subject = in_file(tmp_path / f"subjects.{suffix}", key)
    assert subject is not None and subject.tier == "pro"

    new_key, _ = run("rotate", "team-a", *store)
    assert in_file(tmp_path / f"subjects.{suffix}", key) is None
    assert in_file(tmp_path / f"subjects.{suffix}", new_key) is not None

    run("revoke", "team-a", *store)
    assert len(FileSubjectStore(tmp_path / f"subjects.{suffix}")) == 0


def test_existing_clear_key_files_keep_working_and_their_comments(tmp_path: Path) -> None:
    path = tmp_path / "subjects.toml"
    shutil.copy(DEMO_SUBJECTS, path)
    run("add", "team-b", "--file", str(path))
    text = path.read_text()
    assert text.startswith("# Demo subjects")
    assert in_file(path, "gk-demo-free") is not None  # untouched subjects keep their key
    listed, _ = run("list", "--file", str(path))
    assert "gk-demo-free" not in listed and "stored in clear" in listed


def test_add_refuses_an_existing_id_and_revoke_an_unknown_one(tmp_path: Path) -> None:
    store = ["--file", str(tmp_path / "s.toml")]
    run("add", "dup", *store)
    result = CliRunner().invoke(cli, ["subjects", "add", "dup", *store])
    assert result.exit_code == 1 and "rotate" in result.output
    result = CliRunner().invoke(cli, ["subjects", "revoke", "nobody", *store])
    assert result.exit_code == 1


def test_redis_store_lifecycle(redis_url: str) -> None:
    store = ["--redis", redis_url, "--prefix", "gk:test-cli:"]
    key, _ = run("add", "team-r", "--tier", "enterprise", "--kyc-level", "business", *store)
    subject = in_redis(redis_url, key)
    assert subject is not None and subject.tier == "enterprise"
    listed, _ = run("list", "--json", *store)
    assert '"team-r"' in listed and key not in listed
    new_key, _ = run("rotate", "team-r", *store)
    assert in_redis(redis_url, key) is None and in_redis(redis_url, new_key) is not None
    run("revoke", "team-r", *store)
    assert in_redis(redis_url, new_key) is None


@pytest.mark.parametrize("suffix", ["toml", "json", "yaml"])
def test_a_reviewer_flags_a_subject_exempt_and_takes_the_flag_off(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"subjects.{suffix}"
    store = ["--file", str(path)]
    key, _ = run("add", "eval-1", "--tier", "enterprise", "--flag", "beta", *store)
    _, note = run("flag", "eval-1", "distillation_exempt", *store)
    assert "beta, distillation_exempt" in note and "input.subject.flags" in note
    subject = in_file(path, key)
    assert subject is not None and subject.flags == ["beta", "distillation_exempt"]
    run("flag", "eval-1", "distillation_exempt", *store)  # flagging twice changes nothing
    assert in_file(path, key).flags == ["beta", "distillation_exempt"]  # type: ignore[union-attr]
    run("flag", "eval-1", "distillation_exempt", "--remove", *store)
    assert in_file(path, key).flags == ["beta"]  # type: ignore[union-attr]
    result = CliRunner().invoke(cli, ["subjects", "flag", "nobody", "x", *store])
    assert result.exit_code == 1 and "no subject" in result.output


def test_flags_in_redis_keep_the_key(redis_url: str) -> None:
    store = ["--redis", redis_url, "--prefix", "gk:test-cli:"]
    key, _ = run("add", "eval-r", "--tier", "enterprise", "--kyc-level", "business", *store)
    run("flag", "eval-r", "distillation_exempt", *store)
    subject = in_redis(redis_url, key)
    assert subject is not None and subject.flags == ["distillation_exempt"]
    run("revoke", "eval-r", *store)
