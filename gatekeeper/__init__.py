"""gatekeeper: policy-as-code access control and rate limiting for AI model APIs.

Mount ``GatekeeperMiddleware`` in a Starlette or FastAPI app (or run ``gatekeeper proxy``) and
every request is identified, located, inspected, decided by a Rego policy, held to its quotas,
shaped (reasoning exposure) and written to the decision log.
"""

__version__ = "0.1.0"

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
