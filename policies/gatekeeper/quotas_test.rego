package gatekeeper.quotas_test

import data.gatekeeper.decision
import data.gatekeeper.decision_test_helpers as h
import data.gatekeeper.test_fixtures as fixtures

# The decision carries quota templates; gatekeeper fills in each one's key and cost from the
# input (contract.resolve_quotas). Keys and costs are checked by the conformance cases
# (policies/conformance/cases.yaml), which judge the decision as gatekeeper enforces it.

model_request(tier, level, tokens) := object.union(h.subject(tier, level), {
	"subject": {"id": "s1", "org": "acme", "tier": tier, "kyc_level": level},
	"request": {"estimated_tokens": tokens},
})

by_name(d) := {q.name: q | some q in d.quotas}

test_free_tier_request_bucket if {
	d := decision with input as h.subject("free", "email") with data.gatekeeper.config as fixtures.config
	by_name(d).requests == {
		"name": "requests", "unit": "requests", "capacity": 10, "rate": 10, "period": 60,
		"on_store_error": "local",
	}
}

test_pro_tier_bucket if {
	d := decision with input as h.subject("pro", "government_id") with data.gatekeeper.config as fixtures.config
	by_name(d).requests.capacity == 60
	by_name(d).requests.rate == 60
}

test_enterprise_tier_bucket if {
	d := decision with input as h.subject("enterprise", "business") with data.gatekeeper.config as fixtures.config
	by_name(d).requests.capacity == 600
	by_name(d).requests.rate == 600
}

test_unknown_tier_gets_the_default_tier if {
	d := decision with input as h.subject("platinum", "email") with data.gatekeeper.config as fixtures.config
	by_name(d).requests.capacity == 10
}

test_templates_leave_key_and_cost_to_gatekeeper if {
	d := decision with input as model_request("pro", "government_id", 900) with data.gatekeeper.config as fixtures.config
	count(d.quotas) == 4
	every q in d.quotas {
		not q.key
		not q.cost
	}
}

test_model_token_bucket if {
	d := decision with input as model_request("free", "email", 4200) with data.gatekeeper.config as fixtures.config
	q := by_name(d).tokens
	q.unit == "tokens"
	q.capacity == 100000
	q.rate == 100000
	q.period == 60
}

test_monthly_token_window_is_shared_by_the_org if {
	d := decision with input as model_request("pro", "government_id", 900) with data.gatekeeper.config as fixtures.config
	q := by_name(d).tokens_month
	q.kind == "window"
	q.window == "month"
	q.scope == "org"
	q.capacity == 20000000
	not q.rate
}

test_reasoning_quota_in_tiers_that_may_expose_reasoning if {
	free := decision with input as model_request("free", "email", 500) with data.gatekeeper.config as fixtures.config
	not by_name(free).reasoning_tokens
	enterprise := decision with input as model_request("enterprise", "business", 500) with data.gatekeeper.config as fixtures.config
	by_name(enterprise).reasoning_tokens.unit == "reasoning_tokens"
	by_name(enterprise).reasoning_tokens.on_store_error == "deny"
}

test_refused_requests_spend_no_quota if {
	d := decision with input as model_request("free", "none", 500) with data.gatekeeper.config as fixtures.config
	d.allow == false
	d.quotas == []
}
