"""A simulation scenario: who sends what, from where, for how long (a YAML file).

See ``simulations/default.yaml`` for a commented example. Paths in a scenario (policy
directories, the GeoIP source) are resolved against the scenario file's directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gatekeeper.errors import ConfigurationError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TierShare(_Model):
    """A share of a group's accounts with one tier and KYC level."""

    tier: str
    kyc: str
    share: float = Field(default=1.0, gt=0)


class LaunchMove(_Model):
    """A group's move to a newly released model (a launch surge, or honest users trying it)."""

    model: str = Field(description="The new model (give its release in the scenario's `releases`).")
    #: Share of each account's requests on the new model once it has moved.
    share: float = Field(gt=0, le=1)
    #: When the accounts move, in simulated hours from the start.
    at_hours: float = Field(default=0.0, ge=0)


class Review(_Model):
    """A reviewer flags a group's accounts part-way through the run (e.g. clears an evaluation
    harness with ``distillation_exempt``), through the subject store, as
    ``gatekeeper subjects flag`` does."""

    #: The flags are added once the group has sent this many requests.
    after_requests: int = Field(gt=0)
    flags: list[str] = Field(default_factory=lambda: ["distillation_exempt"], min_length=1)


class Group(_Model):
    """What a group of accounts has in common (benign users or a campaign's accounts)."""

    name: str
    accounts: int = Field(gt=0)
    tiers: list[TierShare] = Field(min_length=1)
    account_age_days: tuple[float, float] = (30.0, 900.0)
    requests_per_hour: float = Field(gt=0, description="Per account, on average (Poisson).")
    reasoning_share: float = Field(default=0.5, ge=0, le=1)
    network: str = Field(description="Name of an address pool in `networks`.")
    #: Distinct /24s (or /48s) the group's accounts are spread over; unset: one per account.
    prefixes: int | None = Field(default=None, gt=0)
    #: Organisations the accounts belong to; unset: one each.
    orgs: int | None = Field(default=None, gt=0)
    #: Payment instruments shared by the accounts; unset: one each.
    payment_cards: int | None = Field(default=None, gt=0)
    #: User-Agent strings the accounts use (each account picks one; "" sends an empty one).
    user_agents: list[str] = Field(
        default_factory=lambda: [
            "OpenAI/Python 1.54.4",
            "OpenAI/Python 1.58.1",
            "OpenAI/JS 4.73.0",
            "AsyncOpenAI/Python 1.57.0",
            "curl/8.5.0",
            "LangChain/0.3.9",
            "Mozilla/5.0 (X11; Linux x86_64) app/2.4",
        ]
    )
    #: ``natural`` (varied questions), ``templates`` (the group's own), or ``rubric``.
    prompts: Literal["natural", "templates"] = "natural"
    templates: list[str] = Field(default_factory=list)
    #: Share of natural prompts that ask for step-by-step reasoning.
    cot_share: float = Field(default=0.05, ge=0, le=1)
    #: Accounts start within this many simulated hours (a campaign ramping up).
    ramp_hours: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=512, gt=0)
    #: Send the same function tools with every request (an agentic client).
    tools: bool = False
    #: Flags of the accounts in the subject store (e.g. ``distillation_exempt``).
    flags: list[str] = Field(default_factory=list)
    #: Move (part of) the accounts' traffic to a newly released model during the run.
    launch: LaunchMove | None = None
    #: A reviewer flags the accounts mid-run (in-process runs; the report splits the group's
    #: shares before and after).
    review: Review | None = None

    @model_validator(mode="after")
    def _templates_when_templated(self) -> Group:
        if self.prompts == "templates" and not self.templates:
            raise ValueError(f"group {self.name!r}: prompts = templates needs `templates`")
        return self


class Scenario(_Model):
    """The whole simulation."""

    name: str
    description: str = ""
    seed: int = 7
    hours: float = Field(default=1.0, gt=0, description="Simulated duration.")
    model: str = "demo-reasoner"
    #: Policy directories: the pack under test and the per-key-limits baseline.
    pack: Path
    baseline: Path
    geo: Path = Field(description="GeoIP source (YAML) that maps the address pools.")
    networks: dict[str, list[str]] = Field(description="Address pools: name -> CIDRs.")
    #: Pretend `model` was released this many days before the run (launch-window rule).
    released_days_ago: float | None = None
    #: Other models and how many hours before the run's start each was released (written into
    #: the pack's config/launch releases, as `released_days_ago` is for `model`).
    releases: dict[str, float] = Field(default_factory=dict)
    benign: list[Group] = Field(min_length=1)
    campaigns: list[Group] = Field(min_length=1)

    @model_validator(mode="after")
    def _pools_exist(self) -> Scenario:
        for group in [*self.benign, *self.campaigns]:
            if group.network not in self.networks:
                raise ValueError(f"group {group.name!r}: unknown network {group.network!r}")
        for group in [*self.benign, *self.campaigns]:
            if group.launch is not None and group.launch.model not in self.releases:
                raise ValueError(
                    f"group {group.name!r}: model {group.launch.model!r} is not in `releases`"
                )
        names = [g.name for g in [*self.benign, *self.campaigns]]
        if len(set(names)) != len(names):
            raise ValueError("group names must be unique")
        return self

    @classmethod
    def load(cls, path: Path, **overrides: Any) -> Scenario:
        """Read and validate a scenario file; raises ``ConfigurationError``."""
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"scenario {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigurationError(f"scenario {path}: expected a mapping")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        try:
            scenario = cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigurationError(f"scenario {path}:\n{exc}") from exc
        base = path.resolve().parent
        for name in ("pack", "baseline", "geo"):
            value: Path = getattr(scenario, name)
            if not value.is_absolute():
                setattr(scenario, name, (base / value).resolve())
        return scenario
