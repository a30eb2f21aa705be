# Reasoning-trace exposure: how much chain-of-thought a response may carry.
package gatekeeper.reasoning

import data.gatekeeper.config.reasoning as cfg
import data.gatekeeper.kyc

exposure := rule.exposure if {
	rule := cfg.by_tier[input.subject.tier]
	kyc.at_least(rule.min_kyc)
} else := cfg.default
