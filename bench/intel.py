"""Shared-intelligence matching per request: `python -m bench.intel`.

``IntelIndex.match`` (gatekeeper/signals/intel.py) with every fact of a request given (client
address, ASN, user agent, payment fingerprint, the prompt's 8 family band keys), against an
empty index and one of 12,000 indicators: 10,000 random IPv4 prefixes of 5 lengths, and 2,000
each of ASNs, user agents, payment hashes and prompt families; a request that matches nothing
and one whose address is in a prefix. Wall time per call (``timeit``, best of 5 rounds), as
docs/intel.md reports it. No HTTP request is sent (no non-2xx answer possible).
"""

from __future__ import annotations

import ipaddress
import random
import timeit
from typing import Any

from gatekeeper.signals.families import FamilyIndex
from gatekeeper.signals.intel import IntelIndex, payment_hash
from gatekeeper.signals.skeleton import skeleton

NOW = 1.8e9


def indicators(prefixes: int = 10_000, others: int = 2_000) -> list[dict[str, Any]]:
    rng = random.Random(1)
    items: list[dict[str, Any]] = []
    for i in range(prefixes):
        length = rng.choice([16, 20, 24, 24, 24, 28, 32])
        network = ipaddress.ip_network(
            (rng.getrandbits(32) >> (32 - length) << (32 - length), length)
        )
        items.append(
            {"id": f"indicator--n{i}", "confidence": 60, "match": {"network": [str(network)]}}
        )
    for i in range(others):
        bands = FamilyIndex.keys(skeleton(f"generated prompt number {i} about topic t{i}"))
        items.append(
            {
                "id": f"indicator--o{i}",
                "match": {
                    "asn": [60_000 + i],
                    "user_agent": [f"harvester/{i}"],
                    "payment": [payment_hash(f"card-{i}")],
                    "prompt_family": [bands[0].replace(":", "").replace(".", "")],
                },
            }
        )
    return items


def per_call(index: IntelIndex, facts: dict[str, Any], number: int = 50_000) -> float:
    rounds = timeit.repeat(lambda: index.match(NOW, **facts), number=number, repeat=5)
    return min(rounds) / number


def main() -> None:
    items = indicators()
    full, empty = IntelIndex(items), IntelIndex([])
    facts = {
        "client_ip": "203.0.113.7",
        "asn": 64500,
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "payment_fingerprint": "card-customer",
        "bands": FamilyIndex.keys(skeleton("Explain the causes of the French revolution.")),
    }
    hit = {**facts, "client_ip": items[0]["match"]["network"][0].split("/")[0]}
    assert full.match(NOW, **facts) == [] and full.match(NOW, **hit)
    base = per_call(empty, facts)
    print("IntelIndex.match, one request with every fact given (best of 5 rounds)")
    print(f"  empty index                              {base * 1e6:6.2f} us")
    for name, index, f in (
        (f"{full.size:,} indicators, no match", full, facts),
        (f"{full.size:,} indicators, a prefix matches", full, hit),
    ):
        t = per_call(index, f)
        print(f"  {name:<40} {t * 1e6:6.2f} us  ({t / base:.1f}x empty)")


if __name__ == "__main__":
    main()
