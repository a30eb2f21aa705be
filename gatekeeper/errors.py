"""The gatekeeper error hierarchy.

::

    GatekeeperError
    ├── ConfigurationError          bad settings or files; raised at start-up, never per request
    ├── PolicyError                 no valid decision could be had (→ 503 policy_error)
    │   ├── PolicyLoadError         a policy directory or bundle failed to load or compile
    │   ├── PolicyEvaluationError   the engine raised, timed out or returned nothing
    │   └── InvalidDecisionError    the decision does not validate against ``Decision``
    ├── IdentityError               the subject store, resolver hook or JWKS could not be read
    │                               (→ 503 identity_unavailable)
    ├── AuthenticationError         no subject for the request's credentials (→ 401; the code
    │                               says why: missing_api_key, invalid_token, token_expired, …)
    ├── QuotaStoreError             the quota store is unreachable or too slow (→ per-quota setting)
    │   └── QuotaStoreTimeout       no answer within quota.timeout, measured on the store call
    ├── Overloaded                  the process is saturated: shed before any work (→ 503)
    ├── SSEEventTooLarge            an upstream SSE event exceeds the cap (→ stream ended cleanly;
    │                               defined in gatekeeper.reasoning.sse)
    └── ClientInputError            the client sent something unusable (→ 4xx, dialect's format)
        ├── BodyTooLargeError       → 413 request_too_large
        ├── BodyTimeoutError        → 408 request_timeout (the body stalled)
        └── MalformedBodyError      → 400 invalid_request

Every error that can reach a client carries the HTTP ``status`` and the reason ``code`` used in
the dialect's error body and in the decision log. What a client reads is ``client_message``:
for a failure of gatekeeper's own parts (policy engine, subject store, quota store, decision
log) a fixed message, since the exception's text names addresses, URLs and paths; the detail
goes to the log and, credentials masked, to the decision-log record's ``error``.
"""

from __future__ import annotations


class GatekeeperError(Exception):
    """Base class of every error gatekeeper raises."""

    status: int = 500
    code: str = "internal_error"


class ConfigurationError(GatekeeperError):
    """Settings or files named by the settings are unusable."""


class PolicyError(GatekeeperError):
    """The policy could not produce a valid decision; the request is refused (fail closed)."""

    status = 503
    code = "policy_error"


class PolicyLoadError(PolicyError):
    """A policy directory or bundle failed to load or compile."""


class PolicyEvaluationError(PolicyError):
    """The engine raised, timed out or returned an undefined decision."""


class InvalidDecisionError(PolicyError):
    """The decision does not validate against the ``Decision`` contract."""


class IdentityError(GatekeeperError):
    """The subject store could not be read."""

    status = 503
    code = "identity_unavailable"


class AuthenticationError(GatekeeperError):
    """The request's credentials identify no subject: missing, unknown, or a token that does
    not verify. ``code`` says which (``missing_api_key``, ``invalid_api_key``, ``missing_token``,
    ``invalid_token``, ``token_expired``, ``missing_credentials``, ``invalid_credentials``); the
    message never carries the credential."""

    status = 401
    code = "invalid_api_key"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class QuotaStoreError(GatekeeperError):
    """The quota store is unreachable or slower than its timeout."""

    status = 503
    code = "quota_store_unavailable"


class QuotaStoreTimeout(QuotaStoreError):
    """The store got the call but no answer came within ``quota.timeout`` (measured on the
    store call with ``gatekeeper.quota.deadline.wire_timeout``, not on the event loop)."""


class Overloaded(GatekeeperError):
    """The process admits as many requests as ``request.max_admitting`` allows; a new one is
    refused at once, before any work, with ``Retry-After``."""

    status = 503
    code = "overloaded"


class ClientInputError(GatekeeperError):
    """The client sent a request gatekeeper cannot read."""

    status = 400
    code = "invalid_request"


class BodyTooLargeError(ClientInputError):
    """The request body exceeds the configured limit."""

    status = 413
    code = "request_too_large"


class BodyTimeoutError(ClientInputError):
    """The request body did not arrive in full within ``request.body_timeout``."""

    status = 408
    code = "request_timeout"


class MalformedBodyError(ClientInputError):
    """The request body is not valid JSON or not of the dialect's shape (400
    ``invalid_request``, like every ``ClientInputError`` that says no more)."""


#: Fixed client-facing messages for refusals caused by gatekeeper's own parts failing. The
#: exception's own text (a store address, an OPA URL, a file path) is for operators only.
CLIENT_MESSAGES: dict[str, str] = {
    "policy_error": "the access policy could not decide on this request, so it was refused; "
    "retry later, and quote the x-gatekeeper-decision-id header if this persists",
    "identity_unavailable": "the API key could not be checked just now; retry shortly",
    "quota_store_unavailable": "a quota this request counts against cannot be checked just "
    "now; retry shortly",
    "decision_log_unavailable": "the request could not be recorded, so it was refused; retry "
    "shortly",
    "internal_error": "gatekeeper failed to handle this request; retry later, and quote the "
    "x-gatekeeper-decision-id header if this persists",
}


def client_message(code: str, message: str) -> str:
    """What a client is told for a refusal with reason ``code``: the fixed message for a
    failure of gatekeeper's own parts, else ``message`` (written for clients: the client's
    own input, overload)."""
    return CLIENT_MESSAGES.get(code, message)
