package gatekeeper.decision_test

import data.gatekeeper.decision
import data.gatekeeper.test_fixtures as fixtures

base := {
	"version": 1,
	"subject": {"id": "s1", "tier": "free", "kyc_level": "email", "kyc_rank": 1, "flags": [], "auth_method": "api_key"},
	"network": {"client_ip": "203.0.113.7", "country": "US", "jurisdiction_tags": []},
	"request": {"method": "POST", "path": "/v1/chat/completions", "dialect": "openai_chat", "stream": false},
	"signals": {},
	"time": {"unix_ns": 0, "rfc3339": "2026-01-01T00:00:00Z", "weekday": 3, "hour_utc": 0},
}

with_subject(tier, level) := object.union(base, {"subject": object.union(base.subject, {"tier": tier, "kyc_level": level})})

with_country(doc, country) := object.union(doc, {"network": object.union(doc.network, {"country": country})})

test_allowed_free_user_in_us if {
	d := decision with input as base with data.gatekeeper.config as fixtures.config
	d.allow
	d.status == 200
	d.reasons == []
}

test_restricted_jurisdiction_is_451 if {
	d := decision with input as with_country(base, "KP") with data.gatekeeper.config as fixtures.config
	not d.allow
	d.status == 451
	d.reasons[0].code == "jurisdiction_restricted"
}

test_every_restricted_country_is_refused if {
	every c in ["CU", "IR", "KP", "SY"] {
		d := decision with input as with_country(base, c) with data.gatekeeper.config as fixtures.config
		d.status == 451
	}
}

test_unrestricted_country_is_allowed if {
	d := decision with input as with_country(base, "DE") with data.gatekeeper.config as fixtures.config
	d.allow
}

test_unknown_location_below_government_id_is_403 if {
	d := decision with input as with_country(base, null) with data.gatekeeper.config as fixtures.config
	not d.allow
	d.status == 403
	d.reasons[0].code == "location_unknown"
}

test_unknown_location_absent_country_is_403 if {
	doc := json.remove(base, ["network/country"])
	d := decision with input as doc with data.gatekeeper.config as fixtures.config
	d.reasons[0].code == "location_unknown"
}

test_unknown_location_with_government_id_is_allowed if {
	d := decision with input as with_country(with_subject("pro", "government_id"), null) with data.gatekeeper.config as fixtures.config
	d.allow
}

test_kyc_none_is_403_naming_the_level if {
	d := decision with input as with_subject("free", "none") with data.gatekeeper.config as fixtures.config
	not d.allow
	d.status == 403
	d.reasons[0].code == "kyc_insufficient"
	contains(d.reasons[0].message, "email")
	d.obligations.step_up_kyc == "email"
}

test_restricted_jurisdiction_outranks_kyc if {
	d := decision with input as with_country(with_subject("free", "none"), "IR") with data.gatekeeper.config as fixtures.config
	d.status == 451
	[r.code | some r in d.reasons] == ["jurisdiction_restricted", "kyc_insufficient"]
}

test_refusal_carries_no_quota_and_no_reasoning if {
	d := decision with input as with_country(base, "SY") with data.gatekeeper.config as fixtures.config
	d.quotas == []
	d.reasoning.mode == "drop"
}

with_lookup_error(doc) := object.union(doc, {"network": object.union(doc.network, {"country": null, "registered_country": null, "lookup_error": true})})

test_failed_lookup_is_503_for_every_tier_and_level if {
	every tier in ["free", "pro", "enterprise"] {
		every level in ["none", "email", "government_id", "business"] {
			d := decision with input as with_lookup_error(with_subject(tier, level)) with data.gatekeeper.config as fixtures.config
			not d.allow
			d.status == 503
			d.reasons[0].code == "location_lookup_failed"
		}
	}
}

test_failed_lookup_is_refused_even_with_a_country if {
	# Whatever else the input says, a failed lookup is never trusted.
	enterprise := with_subject("enterprise", "business")
	doc := object.union(enterprise, {"network": object.union(enterprise.network, {"lookup_error": true})})
	d := decision with input as doc with data.gatekeeper.config as fixtures.config
	not d.allow
	d.reasons[0].code == "location_lookup_failed"
}

test_failed_lookup_lists_location_unknown_below_government_id if {
	d := decision with input as with_lookup_error(base) with data.gatekeeper.config as fixtures.config
	[r.code | some r in d.reasons] == ["location_lookup_failed", "location_unknown"]
}

test_lookup_error_false_changes_nothing if {
	doc := object.union(base, {"network": object.union(base.network, {"lookup_error": false})})
	d := decision with input as doc with data.gatekeeper.config as fixtures.config
	d.allow
}
