# Reasoning-trace exposure: how much chain-of-thought a response may carry.
package gatekeeper.reasoning

import data.gatekeeper.config.kyc.levels
import data.gatekeeper.config.reasoning as cfg

# The tier's exposure, lowered (never raised) by the anti-extraction pack's cap: distillation.rego.
# Without distillation evidence or a launch window (the common case) no cap is looked for.
exposure := tier_exposure if {
	not data.gatekeeper.distillation.engaged
} else := cap if {
	cap := data.gatekeeper.distillation.reasoning_cap
	data.gatekeeper.distillation.tighter(cap, tier_exposure)
} else := tier_exposure

tier_exposure := rule.exposure if {
	rule := cfg.by_tier[input.subject.tier]

	# kyc.at_least(rule.min_kyc), inlined: a comparison is cheaper than a function call.
	levels[input.subject.kyc_level] >= levels[rule.min_kyc]
} else := cfg.default
