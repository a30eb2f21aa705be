"""Resolver hooks named by import path in the identity tests (``identity.resolver``)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers

#: Team tokens of an app's own database, as the hook would look them up.
TEAMS: dict[str, dict[str, Any]] = {
    "team-enterprise": {
        "id": "team-enterprise",
        "org": "team-org",
        "tier": "enterprise",
        "kyc_level": "business",
        "account_created": "2024-01-01",
    },
    "team-free": {"id": "team-free", "tier": "free", "kyc_level": "email"},
}


async def resolve(headers: Headers, client: tuple[str, int] | None) -> dict[str, Any] | None:
    """The subject of a team token sent as a bearer credential or ``x-api-key``."""
    token = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
    return TEAMS.get(token)


def sync(headers: Headers, client: tuple[str, int] | None) -> None:
    """Not a coroutine: refused at start-up."""
    return None
