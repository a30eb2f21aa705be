# Geographic and jurisdiction restrictions, from the client's real address.
package gatekeeper.jurisdiction

import data.gatekeeper.config.jurisdictions as cfg

restricted := {c | some c in cfg.restricted}

country_known if {
	is_string(input.network.country)
	input.network.country != ""
}

# The common case first: a known country that is not restricted has no refusal, and costs four
# tests instead of evaluating every refusal body. Membership is tested on the data array itself:
# building the `restricted` set would cost more than scanning a short list, on every request.
refusals := set() if {
	is_string(input.network.country)
	input.network.country != ""
	not input.network.country in cfg.restricted
	not input.network.lookup_error
} else := found

# The GeoIP lookup itself failed (a damaged database), which is not the same as an address the
# database does not list: the client may be anywhere, restricted countries included, so no tier
# and no KYC level is allowed through. 503: the fault is the server's, and may pass.
found contains {
	"priority": 5,
	"status": 503,
	"code": "location_lookup_failed",
	"message": "client location could not be determined; try again later",
} if {
	input.network.lookup_error == true
}

found contains {
	"priority": 10,
	"status": 451,
	"code": "jurisdiction_restricted",
	"message": sprintf("service is not available in %s", [input.network.country]),
} if {
	input.network.country in cfg.restricted
	country_known
}

found contains {
	"priority": 20,
	"status": 403,
	"code": "location_unknown",
	"message": sprintf("client location is unknown; KYC level %s or higher is required", [cfg.unknown_location_min_kyc]),
} if {
	not country_known

	# (a failed lookup is refused above for every level; this rule adds its own reason)
	# kyc.at_least(...) inlined, by full path: an imported package's rules would all be evaluated.
	not data.gatekeeper.config.kyc.levels[input.subject.kyc_level] >= data.gatekeeper.config.kyc.levels[cfg.unknown_location_min_kyc]
}
