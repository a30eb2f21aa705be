"""gatekeeper: policy-as-code access control and rate limiting for AI model APIs.

Mount ``GatekeeperMiddleware`` in a Starlette or FastAPI app (or run ``gatekeeper proxy``) and
every request is identified, located, inspected, decided by a Rego policy, held to its quotas,
shaped (reasoning exposure) and written to the decision log.
"""

from typing import TYPE_CHECKING

from gatekeeper._lazy import lazy_exports
from gatekeeper._version import __version__

if TYPE_CHECKING:
    from gatekeeper.contract import (
        CONTRACT_VERSION,
        Decision,
        Input,
        KycLevel,
        QuotaSpec,
        Reason,
        ReasoningPolicy,
    )
    from gatekeeper.errors import (
        ConfigurationError,
        GatekeeperError,
        PolicyError,
    )
    from gatekeeper.middleware import GatekeeperMiddleware
    from gatekeeper.runtime import Gatekeeper
    from gatekeeper.settings import Settings

# The public names are imported on first use (PEP 562), not with the package: the command-line
# tools (`gatekeeper policy test`, …) import `gatekeeper` too, and the middleware's imports
# (Redis, HTTP clients, the shapers) would cost them most of a second before any work.
_EXPORTS = {
    "CONTRACT_VERSION": "gatekeeper.contract",
    "ConfigurationError": "gatekeeper.errors",
    "Decision": "gatekeeper.contract",
    "Gatekeeper": "gatekeeper.runtime",
    "GatekeeperError": "gatekeeper.errors",
    "GatekeeperMiddleware": "gatekeeper.middleware",
    "Input": "gatekeeper.contract",
    "KycLevel": "gatekeeper.contract",
    "PolicyError": "gatekeeper.errors",
    "QuotaSpec": "gatekeeper.contract",
    "Reason": "gatekeeper.contract",
    "ReasoningPolicy": "gatekeeper.contract",
    "Settings": "gatekeeper.settings",
}


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "CONTRACT_VERSION",
    "ConfigurationError",
    "Decision",
    "Gatekeeper",
    "GatekeeperError",
    "GatekeeperMiddleware",
    "Input",
    "KycLevel",
    "PolicyError",
    "QuotaSpec",
    "Reason",
    "ReasoningPolicy",
    "Settings",
    "__version__",
]
