# Reasoning-trace exposure: how much chain-of-thought a response may carry.
package gatekeeper.reasoning

import data.gatekeeper.config.kyc.levels
import data.gatekeeper.config.reasoning as cfg

# The tier's exposure, lowered (never raised) by the anti-extraction pack's cap: distillation.rego.
# Without distillation evidence or a launch window (the common case) no cap is looked for.
# A cohort budget (cohorts.rego), when one applies, meters what is shown: once spent, `drop`.
exposure := object.union(capped, {"budget_quota": data.gatekeeper.cohorts.budget_quota}) if {
	data.gatekeeper.cohorts.budget_quota
} else := capped

capped := tier_exposure if {
	not data.gatekeeper.distillation.engaged
} else := cap if {
	cap := data.gatekeeper.distillation.reasoning_cap
	data.gatekeeper.distillation.tighter(cap, tier_exposure)
} else := tier_exposure

tier_exposure := rule.exposure if {
	rule := cfg.by_tier[input.subject.tier]

	# kyc.at_least(rule.min_kyc), inlined: a comparison is cheaper than a function call.
	levels[input.subject.kyc_level] >= levels[rule.min_kyc]
	auth_method_accepted(rule)
} else := cfg.default

# A tier may name the identity methods its exposure needs (`auth_methods`, e.g. ["jwt"]: only
# subjects identified by a verified token from the identity provider); a subject identified
# otherwise gets the default exposure, as with too low a KYC level. Without the field (the
# default data), any method will do.
auth_method_accepted(rule) if not rule.auth_methods

auth_method_accepted(rule) if input.subject.auth_method in rule.auth_methods
