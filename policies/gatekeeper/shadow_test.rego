package gatekeeper.shadow_test

import data.gatekeeper.decision
import data.gatekeeper.decision_test_helpers as h
import data.gatekeeper.test_fixtures as fixtures

unverified := h.subject("free", "none")

test_a_shadowed_refusal_is_logged_not_enforced if {
	d := decision with input as unverified with data.gatekeeper.config as fixtures.patched({"shadow": {"codes": ["kyc_insufficient"]}})
	not d.allow
	d.shadow
	d.status == 403
	d.reasons[0].code == "kyc_insufficient"
	d.obligations == {}
}

test_a_shadowed_refusal_carries_the_allowed_quotas_and_reasoning if {
	allowed := decision with input as h.subject("free", "email") with data.gatekeeper.config as fixtures.config
	d := decision with input as unverified with data.gatekeeper.config as fixtures.patched({"shadow": {"codes": ["kyc_insufficient"]}})
	d.quotas == allowed.quotas
	d.reasoning == allowed.reasoning
}

test_an_enforced_refusal_wins_over_a_shadowed_one if {
	doc := object.union(unverified, {"network": object.union(unverified.network, {"country": "KP"})})
	d := decision with input as doc with data.gatekeeper.config as fixtures.patched({"shadow": {"codes": ["kyc_insufficient"]}})
	not d.shadow
	d.status == 451
	[r.code | some r in d.reasons] == ["jurisdiction_restricted", "kyc_insufficient"]
	d.obligations == {}
}

test_shadowed_reasons_come_after_enforced_ones if {
	doc := object.union(unverified, {"network": object.union(unverified.network, {"country": "KP"})})
	d := decision with input as doc with data.gatekeeper.config as fixtures.patched({"shadow": {"codes": ["jurisdiction_restricted"]}})
	not d.shadow
	d.status == 403
	[r.code | some r in d.reasons] == ["kyc_insufficient", "jurisdiction_restricted"]
	d.obligations.step_up_kyc == "email"
}

test_no_shadow_codes_by_default if {
	d := decision with input as unverified with data.gatekeeper.config as fixtures.config
	not d.shadow
	d.status == 403
}
