package gatekeeper.reasoning_test

import data.gatekeeper.decision
import data.gatekeeper.decision_test_helpers as h
import data.gatekeeper.test_fixtures as fixtures

test_full_for_enterprise_with_business_kyc if {
	d := decision with input as h.subject("enterprise", "business") with data.gatekeeper.config as fixtures.config
	d.reasoning == {"mode": "full"}
}

test_enterprise_below_business_kyc_gets_nothing if {
	d := decision with input as h.subject("enterprise", "government_id") with data.gatekeeper.config as fixtures.config
	d.reasoning.mode == "drop"
}

test_summary_for_pro_with_government_id if {
	d := decision with input as h.subject("pro", "government_id") with data.gatekeeper.config as fixtures.config
	d.reasoning.mode == "summary"
}

test_pro_below_government_id_gets_nothing if {
	d := decision with input as h.subject("pro", "payment") with data.gatekeeper.config as fixtures.config
	d.reasoning.mode == "drop"
}

test_free_gets_nothing if {
	d := decision with input as h.subject("free", "business") with data.gatekeeper.config as fixtures.config
	d.reasoning.mode == "drop"
}

# Tiers the demo does not use, to show the other modes: the first 128 reasoning tokens, then a
# marker (truncate); a fixed marker in place of the reasoning, the response's shape kept (redact).
test_truncate_for_research_with_government_id if {
	d := decision with input as h.subject("research", "government_id") with data.gatekeeper.config as fixtures.config
	d.reasoning == {"mode": "truncate", "max_tokens": 128}
}

test_redact_for_education_with_phone if {
	d := decision with input as h.subject("education", "phone") with data.gatekeeper.config as fixtures.config
	d.reasoning == {"mode": "redact"}
}

test_research_below_government_id_gets_nothing if {
	d := decision with input as h.subject("research", "payment") with data.gatekeeper.config as fixtures.config
	d.reasoning.mode == "drop"
}

# A reasoning budget: budget_quota names one of the decision's quotas (unit reasoning_tokens);
# gatekeeper checks it at no cost and degrades the mode to drop once it is spent.
budget_reasoning := {
	"default": {"mode": "drop"},
	"by_tier": {"pro": {"min_kyc": "government_id", "exposure": {
		"mode": "summary", "max_tokens": 64, "budget_quota": "reasoning_tokens",
	}}},
}

test_a_budget_quota_names_one_of_the_decisions_quotas if {
	doc := object.union(h.subject("pro", "government_id"), {"request": {"estimated_tokens": 100}})
	d := decision with input as doc with data.gatekeeper.config as fixtures.patched({"reasoning": budget_reasoning})
	d.reasoning.budget_quota == "reasoning_tokens"
	some q in d.quotas
	q.name == d.reasoning.budget_quota
	q.unit == "reasoning_tokens"
}

# auth_methods: a tier's exposure may require how the subject was identified. The default data
# requires nothing, so an API key gets what a JWT gets.
jwt_only_enterprise := {
	"default": {"mode": "drop"},
	"by_tier": {"enterprise": {"min_kyc": "business", "auth_methods": ["jwt"], "exposure": {"mode": "full"}}},
}

with_auth_method(doc, method) := object.union(doc, {"subject": object.union(doc.subject, {"auth_method": method})})

test_default_data_accepts_any_auth_method if {
	every method in ["api_key", "jwt", "resolver"] {
		d := decision with input as with_auth_method(h.subject("enterprise", "business"), method)
		d.reasoning == {"mode": "full"}
	}
}

test_jwt_required_tier_gives_full_reasoning_to_a_jwt if {
	doc := with_auth_method(h.subject("enterprise", "business"), "jwt")
	d := decision with input as doc with data.gatekeeper.config.reasoning as jwt_only_enterprise
	d.allow
	d.reasoning == {"mode": "full"}
}

test_jwt_required_tier_gives_an_api_key_the_default if {
	doc := with_auth_method(h.subject("enterprise", "business"), "api_key")
	d := decision with input as doc with data.gatekeeper.config.reasoning as jwt_only_enterprise
	d.allow
	d.reasoning == {"mode": "drop"}
}

test_jwt_required_tier_gives_an_unknown_method_the_default if {
	d := decision with input as h.subject("enterprise", "business") with data.gatekeeper.config.reasoning as jwt_only_enterprise
	d.reasoning == {"mode": "drop"}
}

test_jwt_requirement_does_not_lower_kyc if {
	doc := with_auth_method(h.subject("enterprise", "government_id"), "jwt")
	d := decision with input as doc with data.gatekeeper.config.reasoning as jwt_only_enterprise
	d.reasoning == {"mode": "drop"}
}
