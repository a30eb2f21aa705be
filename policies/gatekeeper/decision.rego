# The decision gatekeeper enforces: data.gatekeeper.decision.
#
# Each rule module contributes refusals (a set of objects with a priority, an HTTP status, a
# reason code and a message); the lowest priority number decides the status, and every refusal
# is listed in `reasons` so the decision log shows all of them. With no refusal the request is
# allowed with the quotas and the reasoning exposure that the quota and reasoning modules choose.
package gatekeeper

import data.gatekeeper.jurisdiction
import data.gatekeeper.kyc
import data.gatekeeper.quotas
import data.gatekeeper.reasoning

refusals := jurisdiction.refusals | kyc.refusals

ordered_refusals := [r |
	some key in sort([[x.priority, x.code] | some x in refusals])
	some r in refusals
	[r.priority, r.code] == key
]

obligations := {"step_up_kyc": kyc.required_level} if {
	some r in refusals
	r.code == "kyc_insufficient"
} else := {}

decision := {
	"allow": false,
	"status": ordered_refusals[0].status,
	"reasons": [{"code": r.code, "message": r.message} | some r in ordered_refusals],
	"quotas": [],
	"reasoning": {"mode": "drop"},
	"obligations": obligations,
	"headers": {},
	"shadow": false,
} if {
	count(refusals) > 0
} else := {
	"allow": true,
	"status": 200,
	"reasons": [],
	"quotas": quotas.applicable,
	"reasoning": reasoning.exposure,
	"obligations": {},
	"headers": {},
	"shadow": false,
}
