"""Quota templates: the ``key`` and ``cost`` a decision's quotas leave out, from the input.

The one place a template is completed. Every engine (embedded, OPA, replay of a log,
conformance cases, ``gatekeeper policy eval``) validates a decision through
``policy.engine.decision_from_value`` or ``decision_from_json``, which hand the contract
``validation_context(input_doc)``; the quotas the quota stage then enforces, and the decision
log records, are the completed ones. The contract (``contract.Decision``) knows only that a
completer may be given (``contract.QUOTA_TEMPLATES``), not what it reads of the input.
"""

from __future__ import annotations

from typing import Any

from gatekeeper.contract import QUOTA_TEMPLATES


def validation_context(input_doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """The context to validate a ``Decision`` for ``input_doc`` with (``None``: no input, so
    templates stay incomplete and fail validation)."""
    if input_doc is None:
        return None

    def complete(quotas: list[Any], reasoning_mode: str) -> list[Any]:
        return resolve_quotas(quotas, input_doc, reasoning_mode)

    return {QUOTA_TEMPLATES: complete}


def resolve_quotas(
    quotas: list[Any], input_doc: dict[str, Any], reasoning_mode: str = "drop"
) -> list[Any]:
    """Fill in the ``key`` and ``cost`` that the decision's quotas leave out.

    - ``key``: ``<owner>:<name>``; the owner is ``subject:<id>`` for scope ``subject``,
      ``org:<org>`` for scope ``org`` (the subject's when it has no org),
      ``cluster:<id>`` for scope ``cluster`` (the subject's when the signal stage found no
      cluster) and ``cohort:<cohort>`` for scope ``cohort`` (the quota's own ``cohort``, a
      name the policy composes from e.g. account-age band, KYC level, tier, network type,
      country or behavioural cluster; the subject's when it has none). The owner is the hash
      tag of gatekeeper's Redis keys: one slot per owner (``quota.redis_store.storage_key``).
    - ``cost``: 1 for unit ``requests``; the request's estimated model tokens
      (``input.request.estimated_tokens``, settled from the real usage after the response) for
      ``tokens`` and ``reasoning_tokens``. A quota with no cost for this request is left out:
      ``tokens`` of a request that is not a model call (no dialect), ``reasoning_tokens`` when
      the decision exposes no reasoning (mode ``drop``).

    Quotas that give their own ``key`` or ``cost`` keep them; anything malformed is passed on
    unchanged for validation to reject.
    """
    request = input_doc.get("request") or {}
    model_call = isinstance(request.get("dialect"), str)
    tokens = request.get("estimated_tokens", 0)
    owners: dict[str, str] | None = None
    out: list[Any] = []
    for quota in quotas:
        if not isinstance(quota, dict) or ("key" in quota and "cost" in quota):
            out.append(quota)
            continue
        template = _template(quota, model_call, reasoning_mode)
        if template is None:
            continue
        key, cost = template
        quota = dict(quota)
        if cost is TOKENS:
            cost = tokens
        if cost is not NO_COST:
            quota["cost"] = cost
        if type(key) is tuple:
            owners = owners or _owners(input_doc)
            key = _owned(key, owners)
        if key is not NO_KEY:
            quota["key"] = key
        out.append(quota)
    return out


#: ``TemplateSlot`` costs that depend on the request: its estimated tokens, or none at all (a
#: unit without a default cost: validation rejects the quota).
TOKENS: Any = object()
NO_COST: Any = object()

#: One quota whose key or cost a template leaves out: its position among the quotas kept, its
#: key (a string, or ``(scope, name)`` when the owner comes from the input) and its cost (an
#: integer, ``TOKENS`` or ``NO_COST``; or whatever the policy gave).
TemplateSlot = tuple[int, "str | tuple[str, str]", Any]


#: What ``_template`` gives a quota with no name to make its key from (validation rejects it).
NO_KEY: Any = object()


def _template(
    quota: dict[str, Any], model_call: bool, reasoning_mode: str
) -> tuple[Any, Any] | None:
    """The rules of ``resolve_quotas`` for one quota that leaves its key or cost out, as far
    as they do not read the input: its key (its own, a cohort's, ``(scope, name)`` for an
    owner the input gives, or ``NO_KEY``) and its cost (its own, 1, ``TOKENS`` or
    ``NO_COST``); None when it has no cost for such a request (it is left out)."""
    if "cost" in quota:
        cost = quota["cost"]
    else:
        unit = quota.get("unit", "requests")
        if unit == "requests":
            cost = 1
        elif unit in ("tokens", "reasoning_tokens"):
            if not model_call or (unit == "reasoning_tokens" and reasoning_mode == "drop"):
                return None
            cost = TOKENS
        else:
            cost = NO_COST
    key: Any
    if "key" in quota:
        key = quota["key"]
    else:
        name = quota.get("name")
        scope = quota.get("scope", "subject")
        cohort = quota.get("cohort")
        if not isinstance(name, str):
            key = NO_KEY
        elif scope == "cohort" and isinstance(cohort, str) and cohort:
            key = f"cohort:{cohort}:{name}"
        else:
            key = (scope, name)
    return key, cost


def _owned(key: tuple[str, str], owners: dict[str, str]) -> str:
    """The key of quota ``name`` of ``scope`` (``key``) for the input's ``owners``."""
    scope, name = key
    return f"{owners.get(scope, owners['subject'])}:{name}"


def template_slots(
    quotas: list[Any], model_call: bool, reasoning_mode: str = "drop"
) -> tuple[list[TemplateSlot], int] | None:
    """``resolve_quotas`` of ``quotas`` taken apart once: what every request's input fills in.

    For a decision's quotas, whether the request is a model call, and the reasoning mode, what
    ``resolve_quotas`` does is the same for every input but the owners and the token estimate
    (``_template``); ``fill_slots`` does only that part. Returns the slots and how many quotas
    are kept (those with no cost for such a request are left out, as ``resolve_quotas`` leaves
    them), or None for quotas it cannot take apart (validation rejects them anyway).
    """
    slots: list[TemplateSlot] = []
    kept = 0
    for quota in quotas:
        if not isinstance(quota, dict):
            return None
        if "key" in quota and "cost" in quota:
            kept += 1
            continue
        template = _template(quota, model_call, reasoning_mode)
        if template is None:
            continue
        if template[0] is NO_KEY:
            return None
        slots.append((kept, template[0], template[1]))
        kept += 1
    return slots, kept


def fill_slots(slots: list[TemplateSlot], input_doc: dict[str, Any]) -> list[tuple[int, Any, Any]]:
    """Each slot's position, key and cost for ``input_doc``: what ``resolve_quotas`` gives
    the quota at that position (``None`` for a cost left out)."""
    request = input_doc.get("request") or {}
    tokens = request.get("estimated_tokens", 0)
    owners: dict[str, str] | None = None
    out = []
    for index, key, cost in slots:
        if cost is TOKENS:
            cost = tokens
        elif cost is NO_COST:
            cost = None
        if type(key) is tuple:
            owners = owners or _owners(input_doc)
            key = _owned(key, owners)
        out.append((index, key, cost))
    return out


def _owners(input_doc: dict[str, Any]) -> dict[str, str]:
    """The key prefix of each quota scope for one input document."""
    subject = input_doc.get("subject") or {}
    owner = f"subject:{subject.get('id')}"
    org = subject.get("org")
    cluster = ((input_doc.get("signals") or {}).get("cluster") or {}).get("id")
    return {
        "subject": owner,
        "org": f"org:{org}" if isinstance(org, str) and org else owner,
        "cluster": f"cluster:{cluster}" if isinstance(cluster, str) else owner,
    }
