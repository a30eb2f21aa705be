"""The simulated population: accounts, where they connect from, and every request they send.

Everything is drawn from one seeded ``random.Random``, so a scenario and a seed always give the
same accounts, the same prompts and the same schedule: the baseline run and the pack run replay
exactly the same traffic.
"""

from __future__ import annotations

import ipaddress
import random
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson

from gatekeeper.offline.simulate.scenario import Group, Scenario

_NAMES = (
    "Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jonas",
    "Keiko", "Liam", "Mina", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
)  # fmt: skip
_CITIES = (
    "Paris", "Lagos", "Osaka", "Lima", "Oslo", "Denver", "Pune", "Porto", "Hanoi", "Quito",
    "Berlin", "Nairobi", "Seoul", "Toronto", "Madrid", "Cairo", "Dublin", "Perth",
)  # fmt: skip
_QUOTES = (
    "the meeting moved to friday", "it depends on the load", "we shipped it yesterday",
    "the cache was cold", "nobody read the manual", "prices rose again",
)  # fmt: skip
_WORDS = (
    "apples", "bicycles", "lanterns", "pencils", "tickets", "marbles", "notebooks", "kites",
    "candles", "batteries", "oranges", "stamps", "buttons", "cookies", "shells",
)  # fmt: skip

# Natural questions: lower-case slots, so two users rarely share a skeleton.
_FRAMES = (
    "how do i {verb} a {thing} in {tool}?",
    "what is the difference between {thing} and {thing2} in {tool}?",
    "can you write a short {genre} about {topic}?",
    "summarize the main ideas of {topic} for a {audience}.",
    "why does my {thing} keep failing with a timeout in {tool}?",
    "give me three ideas for {topic} this weekend.",
    "explain {topic} to a {audience} in plain words.",
    "what are good practices for {verb}ing a {thing}?",
    "draft a polite email asking about {topic}.",
    "is it better to use {thing} or {thing2} for {topic}?",
    "list the pros and cons of {topic}.",
    "help me plan a trip focused on {topic}.",
)
_SLOTS: dict[str, tuple[str, ...]] = {
    "verb": ("configure", "debug", "profile", "deploy", "test", "refactor", "document", "cache"),
    "thing": (
        "queue",
        "decorator",
        "migration",
        "index",
        "webhook",
        "cron job",
        "container",
        "dataframe",
        "closure",
        "socket",
        "template",
        "pipeline",
    ),
    "thing2": ("thread pool", "generator", "view", "trigger", "lambda", "volume", "stream"),
    "tool": ("python", "postgres", "react", "kubernetes", "excel", "rust", "django", "bash"),
    "genre": ("poem", "story", "limerick", "toast", "haiku", "dialogue"),
    "topic": (
        "sourdough baking",
        "tax deadlines",
        "marathon training",
        "urban gardening",
        "home networking",
        "birdwatching",
        "budget travel",
        "jazz history",
        "learning spanish",
        "solar panels",
        "chess openings",
        "interview prep",
        "composting",
        "photography",
        "rent negotiation",
        "sleep hygiene",
    ),
    "audience": ("child", "new manager", "first-year student", "retiree", "tourist"),
}
_SLOT = re.compile(r"\{(\w+)\}")
#: ``[a|b|c]`` in a template: one of the alternatives (a paraphrasing generator).
_CHOICE = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")
_TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name in ("read_file", "run_tests", "apply_patch")
]


@dataclass(frozen=True, slots=True)
class Account:
    """One simulated API key and everything its requests share."""

    key: str
    id: str
    group: str
    campaign: bool
    tier: str
    kyc: str
    org: str
    payment: str
    ip: str
    user_agent: str
    age_days: float
    start: float
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One request: when (simulated seconds from the start), who, and its body."""

    index: int
    at: float
    account: Account
    body: bytes
    reasoning: bool
    #: The model the request calls (the scenario's, or a group's launch model).
    model: str = ""


class Population:
    """The accounts and the schedule of a scenario."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._rng = random.Random(scenario.seed)
        self.accounts: list[Account] = []
        for group in scenario.benign:
            self.accounts.extend(self._accounts(group, campaign=False))
        for group in scenario.campaigns:
            self.accounts.extend(self._accounts(group, campaign=True))
        self.requests = self._schedule()
        #: Group -> index of the first request sent after a reviewer flagged its accounts.
        self.review_at: dict[str, int] = {}
        sent: dict[str, int] = {}
        groups = {g.name: g for g in [*scenario.benign, *scenario.campaigns]}
        for request in self.requests:
            name = request.account.group
            review = groups[name].review
            sent[name] = sent.get(name, 0) + 1
            if review is not None and sent[name] == review.after_requests + 1:
                self.review_at[name] = request.index

    # --- accounts --------------------------------------------------------------------------

    def _accounts(self, group: Group, *, campaign: bool) -> list[Account]:
        rng = self._rng
        networks = self._prefixes(group)
        total = sum(t.share for t in group.tiers)
        accounts = []
        for i in range(group.accounts):
            pick, tier = rng.uniform(0, total), group.tiers[-1]
            for candidate in group.tiers:
                pick -= candidate.share
                if pick <= 0:
                    tier = candidate
                    break
            slug = f"{group.name}-{i:04d}"
            org_index = i % group.orgs if group.orgs else i
            card_index = rng.randrange(group.payment_cards) if group.payment_cards else i
            network = networks[i % len(networks)]
            accounts.append(
                Account(
                    key=f"sk-sim-{slug}-{rng.getrandbits(48):012x}",
                    id=f"sim-{slug}",
                    group=group.name,
                    campaign=campaign,
                    tier=tier.tier,
                    kyc=tier.kyc,
                    org=f"sim-org-{group.name}-{org_index}",
                    payment=f"card-{group.name}-{card_index}",
                    ip=_host(network, rng),
                    user_agent=rng.choice(group.user_agents),
                    age_days=rng.uniform(*group.account_age_days),
                    start=rng.uniform(0, min(group.ramp_hours, self.scenario.hours)) * 3600,
                    flags=tuple(group.flags),
                )
            )
        return accounts

    def _prefixes(self, group: Group) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The /24s (/48s) the group's accounts connect from, drawn from its address pool."""
        pool = [ipaddress.ip_network(cidr) for cidr in self.scenario.networks[group.network]]
        count = group.prefixes or group.accounts
        chosen = []
        for _ in range(count):
            network = self._rng.choice(pool)
            size = 24 if network.version == 4 else 48
            if network.prefixlen >= size:
                chosen.append(network)
                continue
            index = self._rng.randrange(2 ** (size - network.prefixlen))
            start = int(network.network_address) + (index << (network.max_prefixlen - size))
            chosen.append(ipaddress.ip_network((start, size)))
        return chosen

    # --- requests --------------------------------------------------------------------------

    def _schedule(self) -> list[PlannedRequest]:
        rng = self._rng
        end = self.scenario.hours * 3600
        groups = {g.name: g for g in [*self.scenario.benign, *self.scenario.campaigns]}
        planned: list[tuple[float, str, Account, bytes, bool, str]] = []
        for account in self.accounts:
            group = groups[account.group]
            rate = group.requests_per_hour / 3600
            at = account.start + rng.expovariate(rate)
            while at < end:
                reasoning = rng.random() < group.reasoning_share
                prompt = self._prompt(group)
                model = self.scenario.model
                move = group.launch
                # Drawn for every request of a group that moves, so other groups' schedules
                # stay what they were.
                if move is not None and rng.random() < move.share and at >= move.at_hours * 3600:
                    model = move.model
                body: dict[str, Any] = {
                    "model": model,
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": group.max_tokens,
                    "reasoning_effort": "high" if reasoning else "none",
                }
                if group.tools:
                    body["tools"] = _TOOLS
                planned.append((at, account.id, account, orjson.dumps(body), reasoning, model))
                at += rng.expovariate(rate)
        planned.sort(key=lambda item: (item[0], item[1]))
        return [
            PlannedRequest(i, at, account, body, reasoning, model)
            for i, (at, _, account, body, reasoning, model) in enumerate(planned)
        ]

    def _prompt(self, group: Group) -> str:
        rng = self._rng
        if group.prompts == "templates":
            return _fill(rng.choice(group.templates), rng)
        text = _fill(rng.choice(_FRAMES), rng)
        text = text[0].upper() + text[1:]
        if rng.random() < group.cot_share:
            text += " Please explain step by step."
        return text

    # --- outputs ---------------------------------------------------------------------------

    def subjects_document(self, today: date | None = None) -> dict[str, Any]:
        """The subjects file (JSON) the simulated gateway must load."""
        today = today or date.today()
        return {
            "subjects": [
                {
                    "key": a.key,
                    "id": a.id,
                    "org": a.org,
                    "tier": a.tier,
                    "kyc_level": a.kyc,
                    "account_created": (today - timedelta(days=int(a.age_days))).isoformat(),
                    "payment_fingerprint": a.payment,
                    "flags": list(a.flags),
                }
                for a in self.accounts
            ]
        }


def _host(network: ipaddress.IPv4Network | ipaddress.IPv6Network, rng: random.Random) -> str:
    if network.num_addresses <= 2:
        return str(network.network_address)
    offset = rng.randrange(1, min(network.num_addresses - 1, 255))
    return str(network.network_address + offset)


def _fill(template: str, rng: random.Random) -> str:
    """Fill ``{name}``, ``{city}``, ``{n}``/``{n2}``…, ``{quote}``, ``{word}`` and the
    natural-question slots of a template."""

    def value(match: re.Match[str]) -> str:
        slot = match[1]
        if slot.startswith("name"):
            return rng.choice(_NAMES)
        if slot.startswith("city"):
            return rng.choice(_CITIES)
        if slot.startswith("n"):
            return str(rng.randint(2, 999))
        if slot.startswith("quote"):
            return f'"{rng.choice(_QUOTES)}"'
        if slot.startswith("word"):
            return rng.choice(_WORDS)
        return rng.choice(_SLOTS.get(slot, (slot,)))

    template = _CHOICE.sub(lambda m: rng.choice(m[1].split("|")), template)
    return _SLOT.sub(value, template)
