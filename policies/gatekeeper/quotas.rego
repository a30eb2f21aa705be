# Tiered quotas: which token buckets a request must fit in, from the tier data.
package gatekeeper.quotas

import data.gatekeeper.config.tiers as cfg

tier := input.subject.tier if {
	cfg.tiers[input.subject.tier]
} else := cfg.default_tier

applicable := [q |
	some name, spec in cfg.tiers[tier].quotas
	q := {
		"name": name,
		"key": sprintf("subject:%s:%s", [input.subject.id, name]),
		"kind": "token_bucket",
		"unit": spec.unit,
		"capacity": spec.capacity,
		"rate": spec.rate,
		"period": spec.period,
		"cost": 1,
	}
]
