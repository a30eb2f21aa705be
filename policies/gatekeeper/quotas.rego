# Tiered quotas: which token buckets and calendar windows a request must fit in. Limits live in
# config/tiers/data.json as quota templates; this module only picks the tier's.
#
# A template is a Decision quota without `key` and `cost`: gatekeeper fills those in from the
# input (docs/contracts.md, "Quota templates"), so no quota object is built here per request.
#   key   "<owner>:<name>": the owner is "subject:<id>" (scope "subject", the default),
#         "org:<org>" (scope "org"; the subject's own when it has no org) or "cluster:<id>"
#         (scope "cluster"); gatekeeper's Redis store uses the owner as the hash tag;
#   cost  per unit: requests 1; tokens the request's estimated model tokens (prompt estimate +
#         max_tokens, or the dialect's default output), refunded or charged after the response
#         from the real usage; reasoning_tokens the same estimate, settled with the reasoning
#         tokens the client really saw. Token quotas apply to model requests only (those with a
#         dialect), reasoning-token quotas only when the decision exposes some reasoning.
# A rule that needs another key or cost writes them in its quota objects, and they are kept.
package gatekeeper.quotas

import data.gatekeeper.config.tiers as cfg

tier := input.subject.tier if {
	cfg.tiers[input.subject.tier]
} else := cfg.default_tier

# The tier's quotas, those the anti-extraction pack adds (tighter, or keyed on the account
# cluster: distillation.rego), and a cohort's reasoning budget (cohorts.rego).
applicable := array.concat(array.concat(tier_quotas, data.gatekeeper.distillation.quotas), data.gatekeeper.cohorts.quotas)

# `tier` inlined: one data lookup for a known tier instead of a rule and two lookups.
tier_quotas := qs if {
	qs := cfg.tiers[input.subject.tier].quotas
} else := cfg.tiers[cfg.default_tier].quotas
