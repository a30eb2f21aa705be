"""Ed25519 keys for signed checkpoints, and the keyring that keeps every public key.

A checkpoint names its key by fingerprint (``ed25519:`` + the first 16 bytes of SHA-256 over the
raw 32-byte public key, in hex). The keyring is a directory of ``<hex>.pub`` PEM files, one per
key ever used; a new key is added when the signer starts, and an old one is never removed, so
checkpoints signed before a key rotation still verify.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gatekeeper.errors import ConfigurationError

FINGERPRINT_PREFIX = "ed25519:"


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """``ed25519:<32 hex digits>``, naming ``public_key`` in checkpoints and the keyring."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return FINGERPRINT_PREFIX + hashlib.sha256(raw).hexdigest()[:32]


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The private key in ``path`` (PKCS#8 PEM), created with mode 0600 if missing.

    Several processes may start at once on a new log (``uvicorn --workers``): the key is
    written whole under a temporary name and linked into place, so exactly one is created and
    every other process reads that one, never a half-written file."""
    if path.exists():
        return _load_signing_key(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        os.link(draft, path)
    except FileExistsError:  # another process created it meanwhile: use that one
        return _load_signing_key(path)
    finally:
        draft.unlink(missing_ok=True)
    return key


def _load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise ConfigurationError(f"checkpoint signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"checkpoint signing key {path} is not an Ed25519 key")
    return key


class Keyring:
    """Public keys by fingerprint, kept as PEM files in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._keys: dict[str, Ed25519PublicKey] = {}
        if directory.is_dir():
            for file in sorted(directory.glob("*.pub")):
                try:
                    key = serialization.load_pem_public_key(file.read_bytes())
                except ValueError:
                    continue
                if isinstance(key, Ed25519PublicKey):
                    self._keys[fingerprint(key)] = key

    def __contains__(self, fp: object) -> bool:
        return fp in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, fp: str) -> Ed25519PublicKey | None:
        return self._keys.get(fp)

    def add(self, key: Ed25519PublicKey) -> str:
        """Keep ``key`` (written to the directory if new); returns its fingerprint."""
        fp = fingerprint(key)
        if fp not in self._keys:
            self.directory.mkdir(parents=True, exist_ok=True)
            pem = key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            target = self.directory / f"{fp.removeprefix(FINGERPRINT_PREFIX)}.pub"
            # Whole or absent: another process may be reading the keyring as it starts.
            draft = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            draft.write_bytes(pem)
            os.replace(draft, target)
            self._keys[fp] = key
        return fp


class Signer:
    """Signs checkpoint bodies with one private key."""

    def __init__(self, key: Ed25519PrivateKey, keyring: Keyring | None = None) -> None:
        self._key = key
        public = key.public_key()
        self.fingerprint = keyring.add(public) if keyring is not None else fingerprint(public)

    @classmethod
    def from_files(cls, key_path: Path, keyring_dir: Path) -> Signer:
        """The signer for ``key_path`` (created if missing), its public key kept in the keyring.

        Raises ``ConfigurationError`` when either cannot be read or written."""
        try:
            return cls(load_or_create_signing_key(key_path), Keyring(keyring_dir))
        except OSError as exc:
            raise ConfigurationError(f"checkpoint keys ({key_path}, {keyring_dir}): {exc}") from exc

    def private_pem(self) -> bytes:
        """The private key (PKCS #8 PEM), for the log's own writer process only."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, pem: bytes) -> Signer:
        """The signer of a private key given by ``private_pem``."""
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the checkpoint signing key is not an Ed25519 key")
        return cls(key)

    def sign(self, message: bytes) -> str:
        """The base64 Ed25519 signature of ``message``."""
        return base64.b64encode(self._key.sign(message)).decode("ascii")


def signature_is_valid(key: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True
