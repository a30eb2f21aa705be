"""The two contracts between gatekeeper and its policies.

``Input`` is the document every policy sees as ``input``; ``Decision`` is the value of the one
rule gatekeeper queries (``data.gatekeeper.decision`` by default). Both are versioned: a policy
can read ``input.version`` and a decision may carry ``version``. Everything before the policy
only gathers facts into an ``Input``; everything after it only enforces a ``Decision``.

A decision that does not validate against ``Decision`` is treated as a policy error and the
request is refused (fail closed).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

CONTRACT_VERSION = 1


class KycLevel(StrEnum):
    """How strongly a subject's identity was verified, weakest first."""

    NONE = "none"
    EMAIL = "email"
    PHONE = "phone"
    PAYMENT = "payment"
    GOVERNMENT_ID = "government_id"
    BUSINESS = "business"

    @property
    def rank(self) -> int:
        """Position in the order ``none < email < phone < payment < government_id < business``."""
        return _KYC_ORDER.index(self)


_KYC_ORDER = list(KycLevel)

#: The identity methods (setting ``identity.methods``), as ``input.subject.auth_method`` names them.
AuthMethod = Literal["api_key", "jwt", "resolver"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)

    def with_valid(self, **values: Any) -> Self:
        """A shallow copy with ``values`` set, unvalidated: the caller knows them valid (of
        the fields' exact types). ``model_copy(update=...)`` for less (1.1 to 1.5 µs instead of
        1.5 to 2.4: the request path copies a few decisions, quotas and subjects per request)."""
        copy = self.__copy__()
        copy.__dict__.update(values)
        copy.__pydantic_fields_set__.update(values)
        return copy


class _Frozen(_Model):
    """A part of ``Decision``: immutable, since one validated decision may serve many requests
    (``policy.engine.DecisionCache``); change one with ``model_copy(update=...)``, or
    ``with_valid`` for values known valid."""

    model_config = ConfigDict(frozen=True)


class Subject(_Model):
    """Who is calling: resolved from the API key or token by the identity stage."""

    id: str
    org: str | None = None
    tier: str = "free"
    kyc_level: KycLevel = KycLevel.NONE
    kyc_rank: int = 0
    account_created: str | None = None
    account_age_days: float | None = None
    flags: list[str] = Field(default_factory=list)
    payment_fingerprint: str | None = None
    auth_method: AuthMethod | None = Field(
        default=None,
        description="How the subject was identified: api_key, jwt or resolver (the app's hook).",
    )

    @model_validator(mode="after")
    def _rank_follows_level(self) -> Subject:
        self.kyc_rank = self.kyc_level.rank
        return self


class Network(_Model):
    """Where the request comes from, after trusted-proxy resolution and GeoIP lookup."""

    client_ip: str | None = None
    peer_ip: str | None = None
    forwarded: bool = False
    country: str | None = None
    registered_country: str | None = None
    asn: int | None = None
    as_org: str | None = None
    is_hosting: bool = False
    is_proxy: bool = False
    jurisdiction_tags: list[str] = Field(default_factory=list)
    #: The GeoIP lookup of ``client_ip`` failed (a damaged database), as opposed to an address
    #: the database does not list: every fact above is unknown, and the policy must not allow
    #: on the strength of KYC alone (the default pack refuses it for every tier).
    lookup_error: bool = False


class PromptFeatures(_Model):
    """Cheap facts about the prompt; the text itself never reaches the policy or the log."""

    messages: int = 0
    chars: int = 0
    has_tools: bool = False
    has_tool_results: bool = False


class RequestInfo(_Model):
    """What is being asked, as read from the HTTP request and its body by the dialect."""

    method: str
    path: str
    dialect: str | None = None
    model: str | None = None
    stream: bool = False
    reasoning_requested: bool = False
    max_tokens: int | None = None
    estimated_tokens: int = 0
    user_agent: str | None = None
    prompt_features: PromptFeatures = Field(default_factory=PromptFeatures)


class UsageSignals(_Model):
    """Usage in rolling windows; each map is keyed by window name (setting ``signals.windows``).

    Counts cover the requests seen before this one (this request is not included).
    """

    requests: dict[str, int] = Field(default_factory=dict)
    tokens: dict[str, int] = Field(default_factory=dict)
    reasoning_requests: dict[str, int] = Field(default_factory=dict)
    reasoning_tokens: dict[str, int] = Field(default_factory=dict)
    refused: dict[str, int] = Field(default_factory=dict)
    reasoning_exposed: dict[str, int] = Field(
        default_factory=dict,
        description="Requests whose response showed the client some reasoning (settled after "
        "the response, whatever the request asked for).",
    )
    repeated: dict[str, int] = Field(
        default_factory=dict,
        description="Requests whose prompt was of a family the subject (cluster) had already "
        "sent in the main window.",
    )
    reasoning_share: float = Field(
        default=0.0, description="reasoning_requests / requests in the main window (0-1)."
    )
    exposed_share: float = Field(
        default=0.0, description="reasoning_exposed / requests in the main window (0-1)."
    )
    repeat_share: float = Field(
        default=0.0, description="repeated / requests in the main window (0-1)."
    )
    template_count: int = Field(
        default=0, description="Prompts in the main window with this prompt's skeleton."
    )
    family_count: int = Field(
        default=0, description="Prompts in the main window of this prompt's family."
    )


class SubjectSignals(UsageSignals):
    """The calling subject's own usage."""

    account_age_days: float | None = None


class ClusterSignals(UsageSignals):
    """The account cluster of the subject: subjects linked by shared attributes."""

    id: str | None = None
    size: int = 1
    linked_by: list[str] = Field(default_factory=list)
    subjects_by_age: dict[str, int] = Field(
        default_factory=dict,
        description="Members younger than each age edge (days; setting signals.age_edges).",
    )


class FamilySignals(_Model):
    """The prompt's family: near-duplicate prompts (MinHash/LSH) of the main window."""

    id: str | None = None
    subjects: int = Field(default=0, description="Subjects that sent the family's prompts.")
    subjects_by_age: dict[str, int] = Field(
        default_factory=dict, description="Those younger than each age edge (days)."
    )


class BehaviourSignals(_Model):
    """The subject's behavioural cluster: subjects whose usage fingerprints are near."""

    id: str | None = None
    size: int = 1
    subjects_by_age: dict[str, int] = Field(
        default_factory=dict, description="Members younger than each age edge (days)."
    )
    fingerprinted: bool = Field(
        default=False, description="The subject has enough requests to be fingerprinted."
    )


class ModelShiftSignals(_Model):
    """How much of the subject's traffic moved to this request's model (a launch surge)."""

    model: str | None = Field(default=None, description="The model the request calls.")
    recent_share: float = Field(
        default=0.0,
        description="Share of the subject's requests in the recent window (the shortest "
        "signals window) on this model, this request included (0-1).",
    )
    prior_share: float = Field(
        default=0.0,
        description="Share of its requests on this model in the prior window (the longest, "
        "less the recent one) (0-1).",
    )
    prior_requests: int = Field(
        default=0, description="The subject's requests in the prior window (its history)."
    )
    moved: bool = Field(
        default=False,
        description="The subject moved to this model within the prior window: with 5 or more "
        "requests of history and 3 recent ones, its recent share reached 0.5 while its prior "
        "share was below.",
    )
    cluster_moved: int = Field(
        default=0,
        description="Subjects of the subject's behavioural cluster that moved to this model.",
    )
    subjects_moved: int = Field(
        default=0, description="Subjects, in any cluster, that moved to this model."
    )


IndicatorKind = Literal["network", "asn", "user_agent", "payment", "prompt_family"]


class IndicatorMatch(_Model):
    """A shared-intelligence indicator (docs/intel.md) that matched this request."""

    id: str = Field(description="The STIX indicator id (indicator--<uuid>).")
    kind: IndicatorKind = Field(
        description="What matched: network (client address in a prefix), asn, user_agent, "
        "payment (SHA-256 of the payment fingerprint) or prompt_family (a sketch band)."
    )
    source: str | None = Field(
        default=None, description="Who shared it: the name of its created_by_ref identity."
    )
    confidence: int | None = Field(
        default=None, description="The indicator's STIX confidence (0-100; null: not given)."
    )


class Signals(_Model):
    """Distillation signals computed before the policy (``available`` once the stage ran)."""

    available: bool = False
    subject: SubjectSignals = Field(default_factory=SubjectSignals)
    cluster: ClusterSignals = Field(default_factory=ClusterSignals)
    cot_elicitation: float = 0.0
    cot_patterns: list[str] = Field(default_factory=list)
    template_hash: str | None = None
    template_repetition: float = 0.0
    family: FamilySignals = Field(default_factory=FamilySignals)
    behaviour: BehaviourSignals = Field(default_factory=BehaviourSignals)
    model_shift: ModelShiftSignals = Field(default_factory=ModelShiftSignals)
    indicators: list[IndicatorMatch] = Field(
        default_factory=list,
        description="Valid shared-intelligence indicators matching the request (setting "
        "signals.intel_path); empty without any.",
    )


class TimeInfo(_Model):
    """The request's arrival time, so policies need no non-deterministic builtins."""

    unix_ns: int
    rfc3339: str
    weekday: int = Field(description="0 = Monday")
    hour_utc: int


class Input(_Model):
    """The policy input document (``input`` in Rego)."""

    version: int = CONTRACT_VERSION
    subject: Subject
    network: Network
    request: RequestInfo
    signals: Signals = Field(default_factory=Signals)
    time: TimeInfo


class Reason(_Frozen):
    """Why a decision was taken; ``code`` is machine-readable and stable."""

    code: str
    message: str = ""


QuotaKind = Literal["token_bucket", "window"]
QuotaUnit = Literal["requests", "tokens", "reasoning_tokens"]
StoreErrorMode = Literal["deny", "allow", "local"]


QuotaScope = Literal["subject", "org", "cluster", "cohort"]

#: The validation context key of a function ``(quotas, reasoning_mode) -> quotas`` that fills in
#: the ``key`` and ``cost`` quota templates leave out (``Decision.model_validate(value,
#: context={QUOTA_TEMPLATES: complete})``; gatekeeper.quota.templates builds it).
QUOTA_TEMPLATES = "quota_templates"


class QuotaSpec(_Frozen):
    """One quota the request must fit in, chosen and parameterised by the policy.

    A token bucket holds ``capacity`` units and gains ``rate`` units every ``period`` seconds.
    A window quota (``kind = "window"``) allows ``capacity`` units per calendar ``window``
    (a `limits` expression such as ``"1/day"``'s period: ``"day"`` or ``"month"``).

    A policy may leave ``key`` and ``cost`` out (a quota template, as the default pack's data
    holds them): gatekeeper then fills them in from the input before validating
    (``gatekeeper.quota.templates``): the key is ``<owner>:<name>``, the owner chosen by
    ``scope``, and the cost is what the request costs in the quota's ``unit``.
    """

    name: str
    key: str
    scope: QuotaScope = "subject"
    #: Scope ``cohort``: the cohort the policy put the request in (e.g. ``young_weak/proxy``).
    cohort: str | None = None
    kind: QuotaKind = "token_bucket"
    unit: QuotaUnit = "requests"
    capacity: StrictInt = Field(ge=0)
    rate: float = Field(default=0.0, ge=0)
    period: float = Field(default=1.0, gt=0)
    window: str | None = None
    cost: StrictInt = Field(default=1, ge=0)
    on_store_error: StoreErrorMode = "deny"

    @model_validator(mode="after")
    def _window_is_a_calendar_window(self) -> QuotaSpec:
        if self.kind == "window":
            # Imported here: the quota package imports this module.
            from gatekeeper.quota.windows import parse_window

            if self.window is None:
                raise ValueError(f"window quota {self.name!r} needs a window, e.g. 'month'")
            parse_window(self.window)
        return self

    @property
    def refill_per_second(self) -> float:
        return self.rate / self.period


ReasoningMode = Literal["full", "summary", "truncate", "redact", "drop"]


class ReasoningPolicy(_Frozen):
    """How much of the model's reasoning the response may expose (docs/reasoning.md).

    ``max_tokens`` bounds what ``summary`` and ``truncate`` show of one response (gatekeeper's
    ``shaping.summary_tokens`` / ``shaping.truncate_tokens`` when unset). ``budget_quota`` names
    one of the decision's quotas (unit ``reasoning_tokens``) that meters the reasoning tokens
    shown across requests: once it is spent, the mode degrades to ``drop``.
    """

    mode: ReasoningMode = "drop"
    max_tokens: int | None = Field(default=None, ge=0)
    budget_quota: str | None = None


class Obligations(_Frozen):
    """Things the caller or the operator must do, beside allowing or refusing."""

    step_up_kyc: KycLevel | None = None
    flag_for_review: StrictBool = False
    notes: list[str] = Field(default_factory=list)


class Decision(_Frozen):
    """The policy's verdict on one request (the value of ``data.gatekeeper.decision``)."""

    # Strict: a policy that returns "yes" or 1 for `allow` is broken, and must not be allowed.
    version: int = CONTRACT_VERSION
    allow: StrictBool
    status: StrictInt = Field(default=200, ge=100, le=599)
    reasons: list[Reason] = Field(default_factory=list)
    quotas: list[QuotaSpec] = Field(default_factory=list)
    reasoning: ReasoningPolicy = Field(default_factory=ReasoningPolicy)
    obligations: Obligations = Field(default_factory=Obligations)
    headers: dict[str, str] = Field(default_factory=dict)
    shadow: StrictBool = False

    @model_validator(mode="before")
    @classmethod
    def _fill_quota_templates(cls, data: Any, info: ValidationInfo) -> Any:
        # Every engine validates with a completer of quota templates as context
        # (``{QUOTA_TEMPLATES: complete}``, gatekeeper.quota.templates): the contract itself
        # knows nothing of where a template's key and cost come from.
        context = info.context
        if isinstance(data, dict) and isinstance(context, dict):
            complete = context.get(QUOTA_TEMPLATES)
            quotas = data.get("quotas")
            if complete is not None and isinstance(quotas, list) and quotas:
                reasoning = data.get("reasoning")
                mode = reasoning.get("mode", "drop") if isinstance(reasoning, dict) else "drop"
                data = {**data, "quotas": complete(quotas, mode)}
        return data

    @field_validator("headers")
    @classmethod
    def _no_hop_by_hop(cls, value: dict[str, str]) -> dict[str, str]:
        forbidden = {"content-length", "transfer-encoding", "connection"}
        bad = sorted(k for k in value if k.lower() in forbidden)
        if bad:
            raise ValueError(f"a decision may not set {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _refusal_is_explained(self) -> Decision:
        if not self.allow:
            if self.status < 400:
                raise ValueError("a refusal needs an error status (>= 400)")
            if not self.reasons:
                raise ValueError("a refusal needs at least one reason")
        return self

    @property
    def primary_reason(self) -> Reason | None:
        return self.reasons[0] if self.reasons else None


def input_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``Input``, for policy authors' tooling."""
    return Input.model_json_schema()


def decision_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``Decision``."""
    return Decision.model_json_schema()
