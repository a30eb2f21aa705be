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

# Cost (regorus evaluates this on every request): each `data.` reference and each rule reference
# costs a few microseconds, comparable to a `sprintf`, while lookups in a local variable are
# cheap. So everything that does not depend on the quota is bound once, before the loop, and
# each quota is a handful of lookups in local variables.
subject_owner := sprintf("subject:%s", [input.subject.id])

# Where "org"-scoped quotas are keyed: the org, or the subject itself when it has none; any
# other scope is keyed on the subject.
org_owners := {"org": sprintf("org:%s", [input.subject.org])} if {
	is_string(input.subject.org)
	input.subject.org != ""
} else := {"org": subject_owner}

# What a request costs per unit; a unit without a cost here (tokens of a non-model request,
# reasoning tokens when none are exposed) has no quota.
unit_cost := {"requests": 1, "tokens": n, "reasoning_tokens": n} if {
	is_string(input.request.dialect)
	n := input.request.estimated_tokens

	# Full path, not an import: see decision.rego on how regorus evaluates imported packages.
	data.gatekeeper.reasoning.exposure.mode != "drop"
} else := {"requests": 1, "tokens": input.request.estimated_tokens} if {
	is_string(input.request.dialect)
} else := {"requests": 1}

# The tier's quotas, and those the anti-extraction pack adds (tighter, or keyed on the account
# cluster: distillation.rego).
applicable := array.concat(tier_quotas, data.gatekeeper.distillation.quotas)

tier_quotas := qs if {
	specs := cfg.tiers[tier].quotas
	costs := unit_cost
	subject := subject_owner
	owners := org_owners
	qs := [q |
		some name, spec in specs
		price := costs[spec.unit]
		q := object.union(
			{
				"name": name,
				"key": concat(":", [object.get(owners, object.get(spec, "scope", "subject"), subject), name]),
				"kind": object.get(spec, "kind", "token_bucket"),
				"unit": spec.unit,
				"capacity": spec.capacity,
				"cost": price,
				"on_store_error": object.get(spec, "on_store_error", "deny"),
			},
			limit_fields(spec),
		)
	]
}

limit_fields(spec) := {"window": spec.window} if {
	object.get(spec, "kind", "token_bucket") == "window"
} else := {"rate": spec.rate, "period": spec.period}
