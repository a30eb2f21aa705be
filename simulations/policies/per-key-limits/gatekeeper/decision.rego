# The simulator's baseline: what a provider without gatekeeper's anti-extraction pack does.
# Every request is allowed, subject to per-key (per-subject) rate limits by tier, and the
# response exposes the reasoning each tier is sold: the same tier table and reasoning exposure
# as the default pack (policies/gatekeeper/config/{tiers,reasoning}), nothing else. No
# signals, no clusters, no KYC step-up, no jurisdiction rules.
package gatekeeper

import data.gatekeeper.config.baseline as cfg

tier := input.subject.tier if cfg.tiers[input.subject.tier]

else := cfg.default_tier

cost("requests") := 1

cost("tokens") := input.request.estimated_tokens if is_string(input.request.dialect)

quotas := [q |
	some name, spec in cfg.tiers[tier].quotas
	price := cost(spec.unit)
	q := {
		"name": name,
		"key": sprintf("subject:%s:%s", [input.subject.id, name]),
		"kind": "token_bucket",
		"unit": spec.unit,
		"capacity": spec.capacity,
		"rate": spec.rate,
		"period": spec.period,
		"cost": price,
		"on_store_error": "local",
	}
]

exposure := rule.exposure if {
	rule := cfg.reasoning[input.subject.tier]
	cfg.kyc_levels[input.subject.kyc_level] >= cfg.kyc_levels[rule.min_kyc]
} else := {"mode": "drop"}

decision := {
	"allow": true,
	"status": 200,
	"reasons": [],
	"quotas": quotas,
	"reasoning": exposure,
	"obligations": {},
	"headers": {},
	"shadow": false,
}
