"""gatekeeper's one settings model.

Values come from, highest precedence first: keyword arguments, environment variables
(``GATEKEEPER_`` prefix, ``__`` between nested names, e.g. ``GATEKEEPER_QUOTA__STORAGE``),
a TOML file (``Settings.load(path)`` or ``GATEKEEPER_CONFIG=path``), then the defaults below.
Relative paths in a TOML file are resolved against the directory that holds the file, so a
copied configuration keeps working wherever it is run from. Settings are validated once, at
start-up; a bad value raises ``ConfigurationError`` before any request is served.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gatekeeper.errors import ConfigurationError

_toml_path: ContextVar[Path | None] = ContextVar("_toml_path", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentitySettings(_Section):
    """Where subjects (API keys and what they map to) come from."""

    store: Literal["file", "redis"] = "file"
    subjects_file: Path | None = Field(
        default=None, description="TOML, JSON or YAML file of subjects (store = file)."
    )
    redis_url: str | None = Field(default=None, description="Redis URL (store = redis).")
    redis_prefix: str = Field(default="gk:subject:", description="Key prefix in Redis.")
    cache_seconds: float = Field(
        default=5.0, ge=0, description="How long a looked-up subject is reused (redis store)."
    )


class NetworkSettings(_Section):
    """How the client's real address and location are found."""

    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Peers (CIDRs or addresses) whose X-Forwarded-For is believed.",
    )
    geoip_database: Path | None = Field(
        default=None, description="MaxMind-format database (GeoIP2/GeoLite2 field names)."
    )
    geoip_source: Path | None = Field(
        default=None,
        description="Readable source to (re)build geoip_database from when it is older.",
    )


class PolicySettings(_Section):
    """Which policy is evaluated, and how."""

    engine: Literal["embedded"] = "embedded"
    path: Path = Field(default=Path("policies"), description="Policy directory.")
    decision: str = Field(
        default="data.gatekeeper.decision", description="The rule gatekeeper queries."
    )


class QuotaSettings(_Section):
    """Where quota state lives."""

    storage: str = Field(
        default="memory://", description="memory://, redis://, rediss://, redis+cluster://…"
    )
    key_prefix: str = "gk"


class AuditSettings(_Section):
    """The decision log."""

    path: Path = Field(default=Path("var/decisions.jsonl"), description="JSONL decision log.")
    queue_size: int = Field(default=10_000, gt=0, description="Events buffered before drops.")
    labels: dict[str, str] = Field(default_factory=dict, description="Added to every event.")


class RequestSettings(_Section):
    """Limits on what clients may send, and which paths are not protected."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    unprotected_paths: list[str] = Field(default_factory=lambda: ["/healthz"])
    max_event_bytes: int = Field(default=1024 * 1024, gt=0, description="Largest SSE event shaped.")


class ServerSettings(_Section):
    """Where the demo and the proxy listen."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)


class Settings(BaseSettings):
    """All of gatekeeper's settings."""

    model_config = SettingsConfigDict(
        env_prefix="GATEKEEPER_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    quota: QuotaSettings = Field(default_factory=QuotaSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    request: RequestSettings = Field(default_factory=RequestSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _toml_path.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
        """Build settings from a TOML file (or ``GATEKEEPER_CONFIG``), the environment and
        keyword overrides. Raises ``ConfigurationError`` with every problem listed."""
        raw = path if path is not None else os.environ.get("GATEKEEPER_CONFIG")
        toml = Path(raw).resolve() if raw else None
        if toml is not None and not toml.is_file():
            raise ConfigurationError(f"configuration file not found: {toml}")
        token = _toml_path.set(toml)
        try:
            settings = cls(**overrides)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid settings:\n{exc}") from exc
        finally:
            _toml_path.reset(token)
        if toml is not None:
            settings._resolve_paths(toml.parent)
        return settings

    def _resolve_paths(self, base: Path) -> None:
        for section in (self.identity, self.network, self.policy, self.audit):
            for name, value in section:
                if isinstance(value, Path) and not value.is_absolute():
                    setattr(section, name, (base / value).resolve())
