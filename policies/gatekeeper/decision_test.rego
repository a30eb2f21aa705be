package gatekeeper.decision_test

import data.gatekeeper.decision

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
	d := decision with input as base
	d.allow
	d.status == 200
	d.reasons == []
}

test_restricted_jurisdiction_is_451 if {
	d := decision with input as with_country(base, "KP")
	not d.allow
	d.status == 451
	d.reasons[0].code == "jurisdiction_restricted"
}

test_every_restricted_country_is_refused if {
	every c in ["CU", "IR", "KP", "SY"] {
		d := decision with input as with_country(base, c)
		d.status == 451
	}
}

test_unrestricted_country_is_allowed if {
	d := decision with input as with_country(base, "DE")
	d.allow
}

test_unknown_location_below_government_id_is_403 if {
	d := decision with input as with_country(base, null)
	not d.allow
	d.status == 403
	d.reasons[0].code == "location_unknown"
}

test_unknown_location_absent_country_is_403 if {
	doc := json.remove(base, ["network/country"])
	d := decision with input as doc
	d.reasons[0].code == "location_unknown"
}

test_unknown_location_with_government_id_is_allowed if {
	d := decision with input as with_country(with_subject("pro", "government_id"), null)
	d.allow
}

test_kyc_none_is_403_naming_the_level if {
	d := decision with input as with_subject("free", "none")
	not d.allow
	d.status == 403
	d.reasons[0].code == "kyc_insufficient"
	contains(d.reasons[0].message, "email")
	d.obligations.step_up_kyc == "email"
}

test_restricted_jurisdiction_outranks_kyc if {
	d := decision with input as with_country(with_subject("free", "none"), "IR")
	d.status == 451
	[r.code | some r in d.reasons] == ["jurisdiction_restricted", "kyc_insufficient"]
}

test_refusal_carries_no_quota_and_no_reasoning if {
	d := decision with input as with_country(base, "SY")
	d.quotas == []
	d.reasoning.mode == "drop"
}
