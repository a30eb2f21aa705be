# Geographic and jurisdiction restrictions, from the client's real address.
package gatekeeper.jurisdiction

import data.gatekeeper.config.jurisdictions as cfg
import data.gatekeeper.kyc

restricted := {c | some c in cfg.restricted}

country_known if {
	is_string(input.network.country)
	input.network.country != ""
}

# Membership is tested on the data array itself: building the `restricted` set would cost more
# than scanning a short list, on every request.
refusals contains {
	"priority": 10,
	"status": 451,
	"code": "jurisdiction_restricted",
	"message": sprintf("service is not available in %s", [input.network.country]),
} if {
	input.network.country in cfg.restricted
	country_known
}

refusals contains {
	"priority": 20,
	"status": 403,
	"code": "location_unknown",
	"message": sprintf("client location is unknown; KYC level %s or higher is required", [cfg.unknown_location_min_kyc]),
} if {
	not country_known
	not kyc.at_least(cfg.unknown_location_min_kyc)
}
