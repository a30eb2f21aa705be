"""gatekeeper's one settings model.

Values come from, highest precedence first: keyword arguments, environment variables
(``GATEKEEPER_`` prefix, ``__`` between nested names, e.g. ``GATEKEEPER_QUOTA__STORAGE``),
a TOML file (``Settings.load(path)`` or ``GATEKEEPER_CONFIG=path``), then the defaults below.
A list in an environment variable is JSON (``["a", "b"]``) or comma-separated (``a,b``).
Relative paths in a TOML file are resolved against the directory that holds the file, so a
copied configuration keeps working wherever it is run from. Settings are validated once, at
start-up; a bad value raises ``ConfigurationError`` before any request is served.
"""

from __future__ import annotations

import os
import types
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from gatekeeper.errors import ConfigurationError

_toml_path: ContextVar[Path | None] = ContextVar("_toml_path", default=None)


class _EnvSource(EnvSettingsSource):
    """Environment variables, where a list may also be written ``a,b`` (not only as JSON):
    ``GATEKEEPER_NETWORK__TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8``."""

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)  # type: ignore[arg-type]
        except ValueError as exc:
            listed = field is not None and _is_list(field.annotation)
            if listed and isinstance(value, str) and not value.lstrip().startswith("["):
                return [item.strip() for item in value.split(",") if item.strip()]
            form = "JSON, or a,b for a list" if listed else "JSON"
            raise ValueError(f"{field_name} = {value!r} is not {form} ({exc})") from exc


def _settings_error(exc: SettingsError) -> str:
    """pydantic-settings' error, with the cause it wraps (which variable, what is wrong)."""
    cause = exc.__cause__
    text = str(exc).replace('source "_EnvSource"', "the environment (GATEKEEPER_*)")
    return f"{text}: {cause}" if cause is not None else text


def _is_list(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_is_list(arg) for arg in get_args(annotation) if arg is not type(None))
    return origin is list or annotation is list


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: JWT algorithms gatekeeper accepts in ``identity.jwt.algorithms`` (never ``none``).
ASYMMETRIC_JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
SYMMETRIC_JWT_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


class JwtClaimSettings(_Section):
    """Which claims of a verified token give the subject's attributes.

    Each value names a claim; when no claim has that exact name, a dotted name is a path into
    nested claims (`realm_access.tier`). Namespaced claims such as
    `https://example.com/tier` are found by their exact name first. An empty name leaves
    the attribute out.
    """

    subject: str = Field(default="sub", min_length=1, description="Claim of the subject id.")
    org: str = Field(default="org", description="Claim of the organisation.")
    tier: str = Field(default="tier", description="Claim of the tier.")
    kyc_level: str = Field(default="kyc_level", description="Claim of the KYC level.")
    account_created: str = Field(
        default="account_created",
        description="Claim of the account creation date (ISO date, or seconds since the epoch).",
    )
    payment_fingerprint: str = Field(
        default="payment_fingerprint", description="Claim of the payment fingerprint."
    )
    flags: str = Field(
        default="flags", description="Claim of the flags (a list, or a space-separated string)."
    )
    default_tier: str = Field(default="free", description="Tier of a token without the claim.")
    default_kyc_level: Literal["none", "email", "phone", "payment", "government_id", "business"] = (
        Field(
            default="none",
            description="KYC level of a token without the claim (or with an unknown level).",
        )
    )


class JwtSettings(_Section):
    """Bearer JWTs (OIDC access or ID tokens), verified in-process with PyJWT."""

    jwks_url: str | None = Field(
        default=None, description="The identity provider's JWKS URL (keys fetched and cached)."
    )
    public_key_file: Path | None = Field(
        default=None, description="A PEM public key, instead of a JWKS URL."
    )
    secret: SecretStr | None = Field(
        default=None, description="A shared secret for HS256/384/512 tokens (your own issuer)."
    )
    issuer: str | None = Field(
        default=None, description="The `iss` tokens must carry (required with jwt)."
    )
    audience: list[str] = Field(
        default_factory=list,
        description="Accepted `aud` values; one must match (required with jwt).",
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"],
        description="Accepted `alg` values; never `none`, HS* only with `secret`.",
    )
    leeway_seconds: float = Field(
        default=30.0, ge=0, le=300, description="Clock skew allowed on `exp`, `nbf` and `iat`."
    )
    jwks_refresh_seconds: float = Field(
        default=300.0, gt=0, description="Age after which the JWKS is refetched in the background."
    )
    jwks_max_stale_seconds: float = Field(
        default=86_400.0,
        ge=0,
        description="How long cached keys keep verifying past their refresh time while the "
        "JWKS endpoint cannot be reached.",
    )
    jwks_timeout: float = Field(default=2.0, gt=0, description="Seconds a JWKS fetch may take.")
    jwks_min_fetch_interval: float = Field(
        default=10.0,
        ge=0,
        description="Least seconds between two fetches caused by unknown `kid`s.",
    )
    claims: JwtClaimSettings = Field(default_factory=JwtClaimSettings)

    @field_validator("algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        known = ASYMMETRIC_JWT_ALGORITHMS | SYMMETRIC_JWT_ALGORITHMS
        unknown = [a for a in value if a not in known]
        if unknown:
            raise ValueError(f"unsupported JWT algorithms {unknown} (`none` is never accepted)")
        if not value:
            raise ValueError("at least one algorithm is needed")
        return value

    def check_usable(self) -> None:
        """Raise ``ValueError`` unless tokens can be verified: one key source, an issuer, an
        audience, and algorithms that fit the key (HS* only with a secret, never with a
        public key: that would let anyone sign with the public key as the HMAC secret)."""
        sources = [self.jwks_url, self.public_key_file, self.secret]
        if sum(s is not None for s in sources) != 1:
            raise ValueError("identity.jwt needs exactly one of jwks_url, public_key_file, secret")
        if not self.issuer or not self.audience:
            raise ValueError("identity.jwt needs issuer and audience")
        symmetric = set(self.algorithms) & SYMMETRIC_JWT_ALGORITHMS
        if self.secret is None and symmetric:
            raise ValueError(f"identity.jwt: {sorted(symmetric)} need `secret`, not a public key")
        if self.secret is not None and set(self.algorithms) - SYMMETRIC_JWT_ALGORITHMS:
            raise ValueError("identity.jwt: with `secret`, only HS256/HS384/HS512 are accepted")


IdentityMethod = Literal["api_key", "jwt", "resolver"]


class IdentitySettings(_Section):
    """Who is calling: API keys (file or Redis), JWTs, or the app's own resolver hook."""

    methods: list[IdentityMethod] = Field(
        default_factory=lambda: list[IdentityMethod](["api_key"]),
        min_length=1,
        description="Identity methods, tried in this order (input.subject.auth_method names "
        "the one that identified the subject).",
    )
    store: Literal["file", "redis"] = Field(
        default="file", description="file: subjects_file; redis: shared by replicas (redis_url)."
    )
    subjects_file: Path | None = Field(
        default=None, description="TOML, JSON or YAML file of subjects (store = file)."
    )
    redis_url: str | None = Field(default=None, description="Redis URL (store = redis).")
    redis_prefix: str = Field(default="gk:subject:", description="Key prefix in Redis.")
    cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a looked-up subject is reused (redis store, resolver hook, file "
        "store re-read); a revoked key stops working within this time.",
    )
    cache_size: int = Field(
        default=10_000, gt=0, description="Subjects the in-process cache holds (least recent out)."
    )
    resolver: str | None = Field(
        default=None,
        description="The app's resolver hook, `module:function` (or pass one to "
        "Gatekeeper.from_settings).",
    )
    resolver_timeout: float = Field(
        default=2.0, gt=0, description="Seconds the resolver hook may take (then 503)."
    )
    jwt: JwtSettings = Field(default_factory=JwtSettings)

    @model_validator(mode="after")
    def _methods_usable(self) -> IdentitySettings:
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("identity.methods lists a method twice")
        if "jwt" in self.methods:
            self.jwt.check_usable()
        return self


def _country_code(text: str) -> str | None:
    """``text`` as an ISO 3166-1 alpha-2 code (``" de"`` -> ``"DE"``), or None if it is not one."""
    code = text.strip().upper()
    return code if len(code) == 2 and code.isascii() and code.isalpha() else None


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
        description="Readable source to (re)build geoip_database from when it is older; "
        "each of its networks is also a canary the database must agree with.",
    )
    geoip_canaries: dict[str, str] = Field(
        default_factory=dict,
        description='Addresses whose country is known, e.g. {"198.51.100.7" = "KP"}: a '
        "database that says otherwise is refused at start-up and on reload.",
    )
    geoip_reload_interval: float = Field(
        default=5.0,
        ge=0,
        description="Seconds between two looks at geoip_database (and geoip_source) for a "
        "changed file, served only once verified; 0: never (restart to load a new file).",
    )

    jurisdiction_tags: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Jurisdiction tags, each with the ISO country codes it covers, e.g. "
        '{EU = ["DE", "FR"], OFAC = ["KP", "IR"]}: input.network.jurisdiction_tags holds the '
        "tags listing the client's country (data for the policy, which decides what a tag "
        "means; logged with every decision and charted by `audit report`).",
    )

    @field_validator("jurisdiction_tags")
    @classmethod
    def _valid_tags(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        checked: dict[str, list[str]] = {}
        for tag, countries in value.items():
            if not tag.strip():
                raise ValueError("a jurisdiction tag is empty")
            codes = []
            for country in countries:
                code = _country_code(country)
                if code is None:
                    raise ValueError(f"tag {tag}: {country!r} is not an ISO 3166-1 alpha-2 code")
                codes.append(code)
            checked[tag.strip()] = sorted(set(codes))
        return checked

    def tags_by_country(self) -> dict[str, list[str]]:
        """``jurisdiction_tags`` turned around: the tags of each country code, sorted."""
        tags: dict[str, list[str]] = {}
        for tag, countries in self.jurisdiction_tags.items():
            for country in countries:
                tags.setdefault(country, []).append(tag)
        return {country: sorted(found) for country, found in tags.items()}

    @field_validator("geoip_canaries")
    @classmethod
    def _valid_canaries(cls, value: dict[str, str]) -> dict[str, str]:
        import ipaddress

        checked: dict[str, str] = {}
        for ip, country in value.items():
            try:
                address = str(ipaddress.ip_address(ip.strip()))
            except ValueError:
                raise ValueError(f"canary {ip!r} is not an IP address") from None
            code = _country_code(country)
            if code is None:
                raise ValueError(f"canary {ip}: {country!r} is not an ISO 3166-1 alpha-2 code")
            checked[address] = code
        return checked


class OpaSettings(_Section):
    """The OPA server queried by the ``opa`` policy engine (docs/policy-authoring.md)."""

    url: str = Field(default="http://127.0.0.1:8181", description="OPA's address, http(s)://h:p.")
    push: bool = Field(
        default=True,
        description="Upload policy.path to OPA (and on every reload); false: OPA loads its "
        "own bundles and decisions are stamped with the bundle revision OPA reports.",
    )
    timeout: float = Field(
        default=0.5, gt=0, description="Seconds a decision may take (then 503 policy_error)."
    )
    admin_timeout: float = Field(
        default=10.0, gt=0, description="Seconds an upload or check request may take."
    )
    pool_size: int = Field(default=32, gt=0, description="Connections kept to OPA.")
    token: SecretStr | None = Field(
        default=None, description="Bearer token, for OPA run with --authentication=token."
    )


class PolicySettings(_Section):
    """Which policy is evaluated, and how."""

    engine: Literal["embedded", "opa"] = Field(
        default="embedded",
        description="embedded: regorus in-process; opa: an OPA server (policy.opa).",
    )
    path: Path = Field(
        default=Path("policies"), description="Policy directory or OPA bundle (.tar.gz)."
    )
    decision: str = Field(
        default="data.gatekeeper.decision", description="The rule gatekeeper queries."
    )
    check: bool = Field(
        default=True,
        description="Run a revision's Rego tests and conformance cases before it becomes "
        "active (at start-up and on reload); a revision that fails is not activated.",
    )
    evaluator: Literal["auto", "interpreter"] = Field(
        default="auto",
        description="embedded engine: auto evaluates with regorus's compiled VM where that is "
        "safe (the policy is rewritten for it, and it must decide every conformance case like "
        "the interpreter), else with the interpreter; interpreter never uses the VM.",
    )
    verify_every: int = Field(
        default=100,
        ge=0,
        description="embedded engine: every n-th decision the VM makes is also evaluated by the "
        "interpreter, whose decision wins; a difference switches the revision to the "
        "interpreter (0: never).",
    )
    reload: bool = Field(
        default=False, description="Watch policy.path and activate new revisions live."
    )
    reload_interval: float = Field(
        default=2.0, gt=0, description="Seconds between two looks at policy.path."
    )
    opa: OpaSettings = Field(default_factory=OpaSettings)


class QuotaSettings(_Section):
    """Where quota state lives, and what happens when it cannot be reached (docs/quotas.md)."""

    storage: str = Field(
        default="memory://",
        description="memory://, redis://, rediss://, redis+unix://, redis+cluster://h:p,h:p, "
        "redis+sentinel://h:p,h:p/service (limits' URI conventions).",
    )
    key_prefix: str = Field(
        default="gk", pattern=r"^[^{}]*$", description="Redis key prefix (no hash-tag braces)."
    )
    timeout: float = Field(
        default=0.25,
        gt=0,
        description="Seconds a store call may go unanswered, from the moment it is sent "
        "(not counting this process's own backlog) before it counts as failed. Generous on "
        "purpose: a Redis starved of CPU on a busy host is slow, not down; the circuit "
        "breaker keeps a real outage from costing every request this long.",
    )
    failure_threshold: int = Field(
        default=3,
        ge=1,
        description="Timeouts in a row that mark the store down (its circuit breaker opens); "
        "a refused or reset connection marks it down at once.",
    )
    local_fraction: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Share of a quota's capacity and rate kept in-process when its "
        "on_store_error is 'local' and the store is down (about 1 / replicas).",
    )
    retry_interval: float = Field(
        default=1.0, gt=0, description="Seconds between attempts to reach a store that failed."
    )
    settle_interval: float = Field(
        default=0.02,
        ge=0,
        le=10,
        description="Seconds a token settlement may wait in memory to be written to Redis "
        "together with others (one script call for all); 0: each is written at once.",
    )
    max_connections: int = Field(
        default=100,
        ge=1,
        description="Redis storage: connections each Redis client of the process (quota "
        "store, reasoning vault) may hold open; a command that finds them all busy waits for "
        "one (pool_timeout). A Redis Cluster: per node, without waiting (redis-py's cluster "
        "pool).",
    )
    pool_timeout: float = Field(
        default=1.0,
        gt=0,
        description="Seconds a Redis command waits for a free pooled connection; then it fails "
        "as when the store is unreachable (each quota's on_store_error; continuity degrades).",
    )


_LINK_KINDS = frozenset({"payment", "org", "network", "asn", "user_agent"})


class SignalSettings(_Section):
    """The distillation signals stage that fills ``input.signals`` (docs/distillation.md)."""

    enabled: bool = Field(default=True, description="Compute signals before the policy.")
    storage: str | None = Field(
        default=None,
        description="memory:// (one process) or a Redis URI as in quota.storage (replicas "
        "share observations through a Redis stream); unset: quota.storage.",
    )
    key_prefix: str = Field(default="gk:signals", description="Prefix of the Redis stream key.")
    windows: dict[str, float] = Field(
        default_factory=lambda: {"10m": 600.0, "1h": 3600.0, "24h": 86400.0},
        description="Rolling windows of usage counters: name (as policies read it) -> seconds.",
    )
    window: str = Field(
        default="1h",
        description="The main window (one of windows): templates, clusters, reasoning share.",
    )
    buckets: int = Field(
        default=12, ge=1, le=600, description="Sub-buckets per window (its resolution)."
    )
    link_by: list[str] = Field(
        default_factory=lambda: ["payment", "org", "network+user_agent"],
        description="Attributes (or '+'-joined combinations) whose sharing links subjects "
        "into one cluster: payment, org, network (/24 or /48), asn, user_agent.",
    )
    max_prompt_chars: int = Field(
        default=2000,
        ge=16,
        description="Prompt characters scored and templated (head and tail of longer prompts).",
    )
    flush_seconds: float = Field(
        default=0.5, gt=0, description="Redis storage: how often observations are published."
    )
    replay_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Redis storage: how much history the stream keeps (MINID, approximately) "
        "and a gateway that starts replays; unset: the main window. Longer windows fill up "
        "from the replay on. A replay costs about 45 µs of CPU per observation (two a "
        "request), the stream about 230 bytes per observation: 24 hours of a fleet's 100 "
        "requests/s are 3.9 GB and 13 minutes of CPU (docs/distillation.md, "
        '"The stream\'s history").',
    )
    max_subjects: int = Field(
        default=200_000,
        ge=1,
        description="Most subjects the signal state keeps (about 8 KB each with three "
        "windows); past it the least recently active is forgotten (docs/distillation.md, "
        "'Memory bounds').",
    )
    max_family_bands: int = Field(
        default=4_000_000,
        ge=8,
        description="Most prompt-family band keys kept (8 per distinct prompt skeleton, about "
        "250 bytes each); past it the least recently used go.",
    )
    scorer: str | None = Field(
        default=None,
        description="'module:factory' returning a Scorer (e.g. a model-backed classifier); "
        "unset: the built-in pattern scorer.",
    )
    intel_path: Path | None = Field(
        default=None,
        description="Shared-intelligence indicators (docs/intel.md): a JSON file written by "
        "`gatekeeper intel import`, or a directory of them; reloaded when they change.",
    )

    @field_validator("windows")
    @classmethod
    def _positive_windows(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("at least one window is needed")
        bad = sorted(name for name, seconds in value.items() if seconds <= 0)
        if bad:
            raise ValueError(f"window lengths must be positive: {', '.join(bad)}")
        return value

    @field_validator("link_by")
    @classmethod
    def _known_link_kinds(cls, value: list[str]) -> list[str]:
        for combination in value:
            unknown = set(combination.split("+")) - _LINK_KINDS
            if unknown:
                raise ValueError(
                    f"unknown link attribute {sorted(unknown)[0]!r} in {combination!r} "
                    f"(known: {', '.join(sorted(_LINK_KINDS))})"
                )
        return value

    @field_validator("window")
    @classmethod
    def _window_is_one_of_windows(cls, value: str, info: Any) -> str:
        windows = info.data.get("windows")
        if windows is not None and value not in windows:
            raise ValueError(f"{value!r} is not one of signals.windows ({', '.join(windows)})")
        return value


class _RemoteSinkSettings(_Section):
    buffer_events: int = Field(
        default=10_000, gt=0, description="Entries held while the receiver is away; then a gap."
    )
    batch_events: int = Field(default=500, gt=0, description="Most entries sent at once.")
    flush_seconds: float = Field(
        default=1.0, gt=0, description="Longest an entry waits for its batch to fill."
    )
    max_backoff_seconds: float = Field(
        default=30.0, gt=0, description="Cap of the retry backoff (from 100 ms, doubling)."
    )


class AuditRedisSinkSettings(_RemoteSinkSettings):
    """A Redis Stream that receives every entry of the decision log (``XADD``)."""

    url: str | None = Field(default=None, description="Redis URL; unset: no Redis sink.")
    stream: str = Field(default="gatekeeper:decisions", description="Stream key.")
    maxlen: int | None = Field(
        default=1_000_000, gt=0, description="Trim to about this many entries; unset: never."
    )


class AuditHttpSinkSettings(_RemoteSinkSettings):
    """An HTTP receiver of OPA's decision-log uploads (gzip JSON arrays, POST)."""

    url: str | None = Field(
        default=None, description="Full upload URL, e.g. http://collector:8282/logs; unset: none."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every upload.")
    upload_size_limit_bytes: int = Field(
        default=32768, ge=90, description="Largest compressed body (OPA's default)."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-upload timeout.")


class AuditSettings(_Section):
    """The decision log (docs/audit.md)."""

    path: Path = Field(default=Path("var/decisions.jsonl"), description="JSONL decision log.")
    on_locked: Literal["own_chain", "fail"] = Field(
        default="own_chain",
        description="When another process holds the log's lock (one writer per chain): "
        "own_chain: write a chain of its own in the lowest free worker slot beside it "
        "(decisions.w1.jsonl, decisions.w2.jsonl, …); fail: stop at start-up, naming the holder.",
    )
    queue_size: int = Field(default=10_000, gt=0, description="Events buffered before drops.")
    linger_seconds: float = Field(
        default=0.05,
        ge=0,
        le=5,
        description="How long the log's writer waits for more events when they arrive one at a "
        "time, to seal and write them together (durable events never wait); 0: write each "
        "batch at once.",
    )
    sealer: Literal["thread", "process"] = Field(
        default="thread",
        description="Where events are masked, sealed into the hash chain, signed, written and "
        "fsynced: thread: in the log's writer thread, which shares the interpreter lock with "
        "the event loop; process: in a writer process of each worker's own, so that this work "
        "no longer takes the event loop's interpreter lock, at 1.1-1.8 times the CPU in all: for "
        "workers with a core to spare (docs/audit.md, Writer process).",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Added to every event.")
    rotate_bytes: int = Field(
        default=64 << 20, ge=0, description="Rotate the JSONL file at this size (0: never)."
    )
    rotate_seconds: float = Field(
        default=0.0, ge=0, description="Rotate the JSONL file at this age (0: never)."
    )
    stdout: bool = Field(default=False, description="Also write every entry to stdout.")
    redis: AuditRedisSinkSettings = Field(default_factory=AuditRedisSinkSettings)
    http: AuditHttpSinkSettings = Field(default_factory=AuditHttpSinkSettings)
    durable_paths: list[str] = Field(
        default_factory=list,
        description="Request paths (fnmatch patterns, e.g. /v1/*) whose responses complete "
        "only once their event is fsynced, or are refused (503).",
    )
    durable_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Longest a durable response waits for its event."
    )
    checkpoint_every: int = Field(
        default=1000, gt=0, description="Sign a checkpoint after this many entries."
    )
    checkpoint_seconds: float = Field(
        default=60.0, ge=0, description="…or after this many seconds with new entries (0: never)."
    )
    signing_key: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM) for checkpoints, created if missing; "
        "default: keys/checkpoint-signing.pem beside the log.",
    )
    keyring: Path | None = Field(
        default=None,
        description="Directory of public keys by fingerprint; default: keys/ beside the log.",
    )
    witness: str | None = Field(
        default=None,
        description="Where every signed checkpoint is also published, out of the writer's reach, "
        "so that a cut or extended log is caught (docs/audit.md, Witness): "
        "redis://host:port[/db]/<stream key> (a Redis stream; rediss:// for TLS), an https:// "
        "URL (records POSTed, all read back by GET) or a file path on another volume. "
        "`gatekeeper audit verify --witness` compares the log with it.",
    )
    hmac_key: SecretStr | None = Field(
        default=None, description="Key of the keyed hashes kept by 'hash' mask rules."
    )
    hmac_key_file: Path | None = Field(default=None, description="…or a file holding it.")
    mask: list[str | dict[str, Any]] = Field(
        default_factory=list,
        description="Mask rules: JSON Pointers to remove, or {op: remove|upsert|hash, path, "
        "value} (also read from data.gatekeeper.config.log.mask).",
    )
    secret_fields: list[str] | None = Field(
        default=None,
        description="Member names removed wherever they occur; default: a built-in list "
        "(authorization, x-api-key, password, document_number, …).",
    )
    max_field_chars: int = Field(
        default=2048,
        ge=64,
        description="Longest string written for any one field of an event; a longer one (a "
        "500 KB model name, say) is cut there, marked with its full length, and listed in the "
        "event's 'truncated'.",
    )

    @field_validator("witness")
    @classmethod
    def _valid_witness(cls, value: str | None) -> str | None:
        from gatekeeper.audit.witness import check_witness_spec

        return None if value is None else check_witness_spec(value)

    @field_validator("mask")
    @classmethod
    def _valid_mask_rules(cls, value: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        from gatekeeper.audit.masking import parse_rules

        parse_rules(value)
        return value


class RequestSettings(_Section):
    """Limits on what clients may send, and which paths are not protected."""

    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="Largest model-API request body (else 413)."
    )
    unprotected_paths: list[str] = Field(
        default_factory=lambda: ["/healthz"],
        description="Paths passed to the app without any check (exact match).",
    )
    max_event_bytes: int = Field(default=1024 * 1024, gt=0, description="Largest SSE event shaped.")
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a model-API request body may take to arrive in full; a client "
        "that stalls longer gets 408 request_timeout (in the dialect's format) and its "
        "connection is closed.",
    )
    max_json_depth: int = Field(
        default=64,
        ge=2,
        description="Deepest nesting of objects and arrays in a model-API request body; deeper "
        "gets 400 invalid_request before the app sees it.",
    )
    max_admitting: int = Field(
        default=128,
        ge=0,
        description="Requests one process may be admitting at once (identify through the quota "
        "check; a request leaves the count when it reaches the app). Past it, a new request is "
        "refused at once, before any work: 503 overloaded with Retry-After, counted and logged. "
        "0: no limit. docs/operations.md, Overload.",
    )


class ServerSettings(_Section):
    """Where the demo and the proxy listen."""

    host: str = Field(default="127.0.0.1", description="Address `gatekeeper demo`/`proxy` bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port they listen on.")
    loop: Literal["auto", "asyncio", "uvloop"] = Field(
        default="auto",
        description="The event loop uvicorn runs them on: auto (uvloop, installed with "
        "gatekeeper), asyncio (the standard library's) or uvloop. A worker saturated by 64 or "
        "more connections serves some of them seconds late on uvloop (128 connections: p99 "
        "1.7-6 s, requests timed out) and all within about 0.3 s on asyncio, for 5-15% fewer "
        "requests/s; request.max_admitting can shed load only on asyncio, since uvloop leaves "
        "the waiting requests unread (docs/operations.md, Overload).",
    )


class RuntimeSettings(_Section):
    """The Python process gatekeeper runs in."""

    gc_freeze: bool = Field(
        default=True,
        description="At ASGI lifespan start-up, once every part is built, collect garbage and "
        "freeze what is left (gc.freeze()): full collections then scan only what requests "
        "create, not the ~90,000 objects of start-up (one-connection p99 45-50 ms -> 7-8 ms, "
        "docs/performance.md). Frozen objects are still freed when unreferenced; only cycles "
        "among them are never collected.",
    )
    switch_interval: float = Field(
        default=0.0005,
        ge=0,
        description="At ASGI lifespan start-up, set the interpreter's thread switch interval "
        "(sys.setswitchinterval), in seconds; 0 leaves Python's own (0.005). The decision log's "
        "writer thread holds the interpreter lock while it seals a batch: a request arriving "
        "then waits up to this long for it (in-memory stores: one-connection p99 6.8 -> 3.7 ms, "
        "requests/s unchanged; behind Redis 5.2 -> 4.7 ms and 4-13% fewer requests/s; "
        "bench.switch, docs/performance.md). Process-wide, like gc_freeze.",
    )


def _endpoint_path(value: str) -> str:
    if value and not value.startswith("/"):
        raise ValueError(f"an endpoint path starts with '/' (or is empty to disable): {value!r}")
    return value


EndpointPath = Annotated[str, AfterValidator(_endpoint_path)]


class ObservabilitySettings(_Section):
    """Health endpoints, Prometheus metrics, OpenTelemetry spans and logs."""

    liveness_path: EndpointPath = Field(
        default="/healthz",
        description="Liveness endpoint served by the middleware, unprotected: its status only "
        "('' disables).",
    )
    readiness_path: EndpointPath = Field(
        default="/readyz",
        description="Readiness endpoint (policy loaded, stores reachable; '' disables). On the "
        "app's port it answers its status only, unless public_detail or token; the detail is "
        "on the metrics port.",
    )
    readiness_timeout_seconds: float = Field(
        default=2.0, gt=0, description="Longest a readiness check of one part may take."
    )
    ready_when_degraded: bool = Field(
        default=True,
        description="Stay ready (status degraded) while a store is down but requests are "
        "served by its fallback modes; false: 503, out of the load balancer.",
    )
    metrics_path: EndpointPath = Field(
        default="/metrics",
        description="Prometheus metrics on the app's own port, only with token or "
        "public_detail ('' disables); always on the metrics port.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Also serve metrics on this separate port (e.g. 9464); unset: no listener.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the separate metrics listener binds."
    )
    token: SecretStr | None = Field(
        default=None,
        description="On the app's port, a request with 'Authorization: Bearer <token>' gets "
        "the readiness detail and the metrics; unset: nobody does there.",
    )
    public_detail: bool = Field(
        default=False,
        description="Serve the readiness detail and the metrics on the app's port to anyone "
        "(the old behaviour): only where no untrusted client reaches that port.",
    )
    multiprocess_dir: Path | None = Field(
        default=None,
        description="Several worker processes (uvicorn --workers, gunicorn): each writes its "
        "metrics to this directory every multiprocess_interval_seconds and at shutdown, and "
        "whichever worker is scraped answers for all of them (docs/operations.md). One "
        "directory per server, emptied before it starts. Unset: PROMETHEUS_MULTIPROC_DIR if "
        "that is set, else each process answers for itself.",
    )
    multiprocess_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often each worker writes its metrics to multiprocess_dir: a scrape "
        "shows the other workers' counts as of at most this long ago.",
    )
    tracing: bool = Field(
        default=True,
        description="Emit OpenTelemetry spans per stage when an OpenTelemetry SDK is configured.",
    )
    json_logs: bool = Field(
        default=False, description="Write logs as one JSON object per line (proxy command)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Level of gatekeeper's own loggers (proxy command)."
    )
    access_log: bool = Field(
        default=False,
        description="Log one line per protected request (decision id, outcome, status, latency).",
    )


class ProxySettings(_Section):
    """The reverse proxy (``gatekeeper proxy``): where requests go and how."""

    upstream: str | None = Field(
        default=None,
        description="Base URL every request is forwarded to, e.g. http://127.0.0.1:9000.",
    )
    upstream_api_key: SecretStr | None = Field(
        default=None,
        description="Replaces the client's Authorization / x-api-key on the way upstream; "
        "unset: the client's credentials pass through.",
    )
    forwarded_headers: Literal["x-forwarded", "forwarded", "both", "none"] = Field(
        default="x-forwarded",
        description="How the client's address is passed on: X-Forwarded-For/-Proto/-Host, "
        "RFC 7239 Forwarded, both, or none.",
    )
    preserve_host: bool = Field(
        default=False, description="Send the client's Host upstream instead of the upstream's."
    )
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to connect (→ 504).")
    read_timeout: float = Field(
        default=300.0, gt=0, description="Longest silence between upstream bytes (→ 504)."
    )
    write_timeout: float = Field(default=60.0, gt=0, description="Seconds to send a chunk.")
    pool_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a free pooled connection (→ 504)."
    )
    max_connections: int = Field(default=100, gt=0, description="Connection pool size.")
    max_keepalive_connections: int = Field(
        default=20, ge=0, description="Idle connections kept open to the upstream."
    )
    keepalive_expiry: float = Field(
        default=30.0, ge=0, description="Seconds an idle upstream connection is kept."
    )

    @field_validator("upstream")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"upstream must be an http:// or https:// URL: {value!r}")
        return value.rstrip("/")


class ShapingSettings(_Section):
    """Reasoning shaping: summaries, truncation defaults, continuity (docs/reasoning.md)."""

    summariser: str = Field(
        default="extractive",
        description="'extractive' (built in, no model) or 'package.module:attribute' naming a "
        "summariser object, class or factory (an async summarise(text, max_tokens) method).",
    )
    summary_tokens: int = Field(
        default=64, ge=0, description="Summary length when the policy sets no max_tokens."
    )
    truncate_tokens: int = Field(
        default=256, ge=0, description="Tokens truncate lets through when the policy sets none."
    )
    buffer_chars: int = Field(
        default=1_000_000,
        gt=0,
        description="Reasoning characters one response may hold (summaries, continuity).",
    )
    continuity: bool = Field(
        default=True,
        description="Keep reasoning a client was not shown and restore it into its next "
        "request (stored where quotas are: memory:// or Redis).",
    )
    continuity_ttl_seconds: float = Field(
        default=86_400.0, gt=0, description="How long kept reasoning can be restored."
    )
    continuity_timeout: float = Field(
        default=0.25, gt=0, description="Seconds a vault read or write may take."
    )
    continuity_max_entries: int = Field(
        default=100_000, gt=0, description="Entries the in-memory vault holds (memory://)."
    )


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
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    signals: SignalSettings = Field(default_factory=SignalSettings)
    shaping: ShapingSettings = Field(default_factory=ShapingSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)

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
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls)]
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
        except SettingsError as exc:
            # e.g. an environment variable that is neither JSON nor a plain value
            raise ConfigurationError(f"invalid settings: {_settings_error(exc)}") from exc
        except (OSError, ValueError) as exc:  # an unreadable or malformed TOML file
            raise ConfigurationError(f"invalid settings: {exc}") from exc
        finally:
            _toml_path.reset(token)
        if toml is not None:
            settings._resolve_paths(toml.parent)
        return settings

    def _resolve_paths(self, base: Path) -> None:
        for section in (
            self.identity,
            self.identity.jwt,
            self.network,
            self.policy,
            self.audit,
            self.observability,
            self.signals,
        ):
            for name, value in section:
                if isinstance(value, Path) and not value.is_absolute():
                    setattr(section, name, (base / value).resolve())
