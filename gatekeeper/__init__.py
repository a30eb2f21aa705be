"""gatekeeper: policy-as-code access control and rate limiting for AI model APIs.

Mount ``GatekeeperMiddleware`` in a Starlette or FastAPI app (or run ``gatekeeper proxy``) and
every request is identified, located, inspected, decided by a Rego policy, held to its quotas,
shaped (reasoning exposure) and written to the decision log.
"""

__version__ = "0.1.0"

from gatekeeper.contract import (  # noqa: E402
    CONTRACT_VERSION,
    Decision,
    Input,
    KycLevel,
    QuotaSpec,
    Reason,
    ReasoningPolicy,
)
from gatekeeper.errors import (  # noqa: E402
    ConfigurationError,
    GatekeeperError,
    PolicyError,
)
from gatekeeper.middleware import GatekeeperMiddleware  # noqa: E402
from gatekeeper.runtime import Gatekeeper  # noqa: E402
from gatekeeper.settings import Settings  # noqa: E402

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
