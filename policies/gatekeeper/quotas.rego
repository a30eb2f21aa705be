# Tiered quotas: which token buckets and calendar windows a request must fit in, and what it
# costs in each. Limits live in config/tiers/data.json; this module only applies them.
#
# Each quota of a tier has a unit:
#   requests          costs 1 per request;
#   tokens            costs the request's estimated model tokens (prompt estimate + max_tokens,
#                     or the dialect's default output); gatekeeper refunds or charges the
#                     difference after the response, from the real usage;
#   reasoning_tokens  costs the same estimate (reasoning cannot exceed the output), settled with
#                     the reasoning tokens the client really saw; only when the tier's reasoning
#                     exposure lets some through.
# Token quotas apply to model requests only (those with a dialect).
# A quota's scope is "subject" (one bucket per API subject) or "org" (one shared by the org's
# subjects; a subject without an org gets its own). Keys start with the owner ("subject:<id>",
# "org:<id>"), which gatekeeper's Redis store uses as the hash tag (one cluster slot per owner).
package gatekeeper.quotas

import data.gatekeeper.config.tiers as cfg

tier := input.subject.tier if {
	cfg.tiers[input.subject.tier]
} else := cfg.default_tier

owner(spec) := sprintf("org:%s", [input.subject.org]) if {
	object.get(spec, "scope", "subject") == "org"
	is_string(input.subject.org)
	input.subject.org != ""
} else := sprintf("subject:%s", [input.subject.id])

cost("requests") := 1

cost("tokens") := input.request.estimated_tokens if is_string(input.request.dialect)

cost("reasoning_tokens") := input.request.estimated_tokens if {
	is_string(input.request.dialect)
	# Full path, not an import: see decision.rego on how regorus evaluates imported packages.
	data.gatekeeper.reasoning.exposure.mode != "drop"
}

# The tier's quotas, and those the anti-extraction pack adds (tighter, or keyed on the account
# cluster: distillation.rego).
applicable := array.concat(tier_quotas, data.gatekeeper.distillation.quotas)

tier_quotas := [q |
	some name, spec in cfg.tiers[tier].quotas
	price := cost(spec.unit)
	q := object.union(
		{
			"name": name,
			"key": sprintf("%s:%s", [owner(spec), name]),
			"kind": object.get(spec, "kind", "token_bucket"),
			"unit": spec.unit,
			"capacity": spec.capacity,
			"cost": price,
			"on_store_error": object.get(spec, "on_store_error", "deny"),
		},
		limit_fields(spec),
	)
]

limit_fields(spec) := {"window": spec.window} if {
	object.get(spec, "kind", "token_bucket") == "window"
} else := {"rate": spec.rate, "period": spec.period}
