# The decision gatekeeper enforces: data.gatekeeper.decision.
#
# Each rule module contributes refusals (a set of objects with a priority, an HTTP status, a
# reason code and a message); the lowest priority number decides the status, and every refusal
# is listed in `reasons` so the decision log shows all of them. With no refusal the request is
# allowed with the quotas and the reasoning exposure that the quota and reasoning modules choose.
#
# Shadow mode: a refusal whose code is listed in config/shadow (`codes`) is logged, not enforced.
# When only shadowed refusals fire, the decision is a refusal marked `"shadow": true` that
# carries the quotas and reasoning exposure the request would have had if allowed, so
# gatekeeper serves it exactly as an allowed request and the log shows what the rule would do.
#
# Performance (regorus evaluates this on every request): rules of other packages are referenced
# by their full path, not through an `import` of the package, because regorus evaluates every
# rule of an imported package that is referenced this way; and the allowed path never touches
# the ordering, obligation or shadow rules (it is the first branch of `decision`).
package gatekeeper

refusals := data.gatekeeper.jurisdiction.refusals | data.gatekeeper.kyc.refusals | data.gatekeeper.distillation.refusals

# Reason codes in shadow mode (config/shadow/data.json).
shadow_codes := {c | some c in data.gatekeeper.config.shadow.codes}

# A refusal that is enforced (its code is not in shadow mode) fired.
enforcing if {
	some r in refusals
	not shadow_codes[r.code]
}

# Enforced refusals first, then shadowed ones; each group by priority, then code.
ordered_refusals := [r |
	some [_, _, _, r] in sort([[count({x.code} & shadow_codes), x.priority, x.code, x] | some x in refusals])
]

# Anti-extraction obligations (flag for review, KYC step-up, notes) come with the refusal too.
obligations := object.union(data.gatekeeper.distillation.obligations, {"step_up_kyc": data.gatekeeper.kyc.required_level}) if {
	some r in refusals
	r.code == "kyc_insufficient"
	not shadow_codes[r.code]
} else := data.gatekeeper.distillation.obligations

# The allowed decision is tested first: it is the common case, and it needs neither the
# ordering nor the shadow rules.
decision := {
	"allow": true,
	"status": 200,
	"reasons": [],
	"quotas": data.gatekeeper.quotas.applicable,
	"reasoning": data.gatekeeper.reasoning.exposure,
	"obligations": data.gatekeeper.distillation.obligations,
	"headers": {},
	"shadow": false,
} if {
	# The union, not each module's set: a module added to `refusals` must refuse here too.
	count(refusals) == 0
} else := {
	"allow": false,
	"status": ordered_refusals[0].status,
	"reasons": [{"code": r.code, "message": r.message} | some r in ordered_refusals],
	"quotas": [],
	"reasoning": {"mode": "drop"},
	"obligations": obligations,
	"headers": {},
	"shadow": false,
} if {
	enforcing
} else := {
	"allow": false,
	"status": ordered_refusals[0].status,
	"reasons": [{"code": r.code, "message": r.message} | some r in ordered_refusals],
	"quotas": data.gatekeeper.quotas.applicable,
	"reasoning": data.gatekeeper.reasoning.exposure,
	"obligations": {},
	"headers": {},
	"shadow": true,
} if {
	count(refusals) > 0
}
