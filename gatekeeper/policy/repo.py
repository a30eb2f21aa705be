"""Loading a policy repo: a directory or an OPA bundle (``.tar.gz`` as ``opa build`` writes it).

Layout follows OPA's bundle rules: every ``*.rego`` file is a module (its package, not its
directory, decides where it lives); only files named exactly ``data.json`` / ``data.yaml`` are
data, and their directory is their data path (``a/b/data.json`` → ``data.a.b``); an optional
``.manifest`` gives the revision and roots. Without a manifest revision, the revision is a
content hash of every file the check reads (modules, tests, data, manifest and conformance
cases), so any edit yields a new revision, and a revision rejected for one of its cases is
checked again once only the cases are fixed.

A directory may also hold ``conformance/cases.yaml``: the repo's table of input → expected
decision cases (see ``gatekeeper.policy.conformance``). It is not policy (not written into
bundles), but it decides whether a revision is accepted, so it is part of the revision.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from gatekeeper.errors import PolicyLoadError

_DATA_NAMES = {"data.json", "data.yaml", "data.yml"}
_SKIP_DIRS = {".git", "__pycache__", ".venv"}
CASES_FILE = "conformance/cases.yaml"
_NO_MODULES = " no .rego modules found"
# libyaml's loader when PyYAML was built with it: the cases file is long, and safe either way.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class PolicySource:
    """Everything an engine needs to compile one policy revision."""

    revision: str
    modules: dict[str, str]
    data: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)
    origin: str = ""
    #: The parsed ``conformance/cases.yaml`` of a directory (``None`` when there is none).
    cases: Any = None
    #: A hash of every file read (cases too), whatever the manifest's revision says: hot
    #: reload compares it, so an edit under an unchanged manifest revision is still seen.
    digest: str = ""

    @property
    def test_modules(self) -> dict[str, str]:
        """Modules holding the repo's Rego unit tests (``*_test.rego``)."""
        return {name: text for name, text in self.modules.items() if is_test_module(name)}

    @property
    def policy_modules(self) -> dict[str, str]:
        """Every module but the tests: what a serving engine needs."""
        return {name: text for name, text in self.modules.items() if not is_test_module(name)}


def is_test_module(name: str) -> bool:
    """``*_test.rego`` files hold tests (OPA's convention, which ``opa test`` follows too)."""
    return name.endswith("_test.rego")


def load_policy(path: Path) -> PolicySource:
    """Load a policy directory or a ``.tar.gz`` bundle. Raises ``PolicyLoadError``."""
    if path.is_dir():
        return _from_files(_walk_dir(path), origin=str(path))
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return _from_files(_walk_bundle(path), origin=str(path))
    raise PolicyLoadError(f"no policy directory or bundle at {path}")


def load_policies(paths: Iterable[Path], *, require_modules: bool = True) -> PolicySource:
    """Several directories or bundles as one policy, as ``opa test``/``opa eval`` load their
    paths: every module (named by its path as given, ``policies/gatekeeper/x.rego``, so that
    reports point at the file) and the data of all of them merged. Without
    ``require_modules``, paths holding no module give an empty policy rather than an error.
    The revision is a hash of every path's revision."""
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    revisions: list[str] = []
    cases: Any = None
    for path in paths:
        if not path.exists():
            raise PolicyLoadError(f"{path}: no such file or directory")
        try:
            source = load_policy(path)
        except PolicyLoadError as exc:
            if require_modules or not str(exc).endswith(_NO_MODULES):
                raise
            continue
        prefix = PurePosixPath(path.as_posix())
        for name, text in source.modules.items():
            modules[str(prefix / name) if path.is_dir() else f"{prefix}/{name}"] = text
        _deep_merge(data, source.data, str(path))
        revisions.append(source.revision)
        cases = cases if cases is not None else source.cases
    if not modules and require_modules:
        raise PolicyLoadError(f"{', '.join(map(str, paths))}:{_NO_MODULES}")
    if len(revisions) == 1:
        revision = revisions[0]
    else:
        revision = "sha256:" + hashlib.sha256("\0".join(revisions).encode()).hexdigest()[:16]
    return PolicySource(revision=revision, modules=modules, data=data, cases=cases)


def _walk_dir(root: Path) -> Iterable[tuple[str, bytes]]:
    for file in sorted(root.rglob("*")):
        rel = file.relative_to(root)
        if any(part in _SKIP_DIRS for part in rel.parts) or not file.is_file():
            continue
        yield rel.as_posix(), file.read_bytes()


def _walk_bundle(bundle: Path) -> Iterable[tuple[str, bytes]]:
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                extracted = tar.extractfile(member)
                if extracted is None:
                    continue
                # `opa build` writes names with a leading "/"; accept both forms.
                yield member.name.lstrip("/"), extracted.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PolicyLoadError(f"cannot read bundle {bundle}: {exc}") from exc


def _from_files(files: Iterable[tuple[str, bytes]], origin: str) -> PolicySource:
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    manifest: dict[str, Any] = {}
    digest = hashlib.sha256()
    cases: Any = None
    for name, raw in files:
        posix = PurePosixPath(name)
        if name == CASES_FILE:
            cases = _parse(name, raw)
        elif posix.name == ".manifest":
            manifest = _parse(name, raw, json_only=True)
        elif posix.suffix == ".rego":
            modules[name] = raw.decode()
        elif posix.name in _DATA_NAMES:
            _merge_at(data, list(posix.parent.parts), _parse(name, raw), name)
        else:
            continue
        digest.update(name.encode() + b"\0" + raw + b"\0")
    if not modules:
        raise PolicyLoadError(f"{origin}:{_NO_MODULES}")
    content = digest.hexdigest()
    revision = manifest.get("revision") or "sha256:" + content[:16]
    return PolicySource(
        revision=str(revision),
        modules=modules,
        data=data,
        manifest=manifest,
        origin=origin,
        cases=cases,
        digest="sha256:" + content,
    )


def fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """A cheap summary of what ``load_policy(path)`` would read (names, sizes, mtimes).

    Hot reload polls this (on a worker thread) and loads the policy only when it changes; the
    revision then decides whether anything really changed. A path that cannot be read gives
    an empty fingerprint.
    """
    try:
        if path.is_file():
            st = path.stat()
            return ((path.name, st.st_size, st.st_mtime_ns),)
        entries: list[tuple[str, int, int]] = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for filename in filenames:
                if not _is_policy_file(filename):
                    continue
                full = os.path.join(dirpath, filename)
                st = os.stat(full)
                entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
        return tuple(sorted(entries))
    except OSError:
        return ()


def _is_policy_file(filename: str) -> bool:
    return (
        filename.endswith(".rego")
        or filename in _DATA_NAMES
        or filename
        in {
            ".manifest",
            "cases.yaml",
        }
    )


def _parse(name: str, raw: bytes, *, json_only: bool = False) -> Any:
    try:
        if json_only or name.endswith(".json") or name == ".manifest":
            return json.loads(raw)
        return yaml.load(raw, Loader=_YAML_LOADER)
    except (ValueError, yaml.YAMLError) as exc:
        raise PolicyLoadError(f"{name}: not valid data: {exc}") from exc


def _merge_at(root: dict[str, Any], path: list[str], value: Any, name: str) -> None:
    if not path:
        if not isinstance(value, dict):
            raise PolicyLoadError(f"{name}: root data must be an object")
        _deep_merge(root, value, name)
        return
    node = root
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise PolicyLoadError(f"{name}: data path {'/'.join(path)} conflicts with other data")
        node = child
    _deep_merge(node, {path[-1]: value}, name)


def _deep_merge(into: dict[str, Any], new: dict[str, Any], name: str) -> None:
    for key, value in new.items():
        if key in into and isinstance(into[key], dict) and isinstance(value, dict):
            _deep_merge(into[key], value, name)
        elif key in into:
            raise PolicyLoadError(f"{name}: data key {key!r} is defined twice")
        else:
            into[key] = value


def bundle_bytes(source: PolicySource, revision: str | None = None) -> bytes:
    """An OPA-compatible bundle of ``source`` (modules, one root data.json, manifest)."""
    manifest = dict(source.manifest)
    manifest["revision"] = revision or source.revision
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        entries = {"/.manifest": json.dumps(manifest, sort_keys=True).encode()}
        entries["/data.json"] = json.dumps(source.data, sort_keys=True).encode()
        for name, text in sorted(source.modules.items()):
            entries["/" + name] = text.encode()
        for name, payload in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()
