package gatekeeper.quotas_test

import data.gatekeeper.decision
import data.gatekeeper.decision_test_helpers as h

model_request(tier, level, tokens) := object.union(h.subject(tier, level), {
	"subject": {"id": "s1", "org": "acme", "tier": tier, "kyc_level": level},
	"request": {"estimated_tokens": tokens},
})

by_name(d) := {q.name: q | some q in d.quotas}

test_free_tier_request_bucket if {
	d := decision with input as h.subject("free", "email")
	by_name(d).requests == {
		"name": "requests", "key": "subject:s1:requests", "kind": "token_bucket",
		"unit": "requests", "capacity": 10, "rate": 10, "period": 60, "cost": 1,
		"on_store_error": "local",
	}
}

test_pro_tier_bucket if {
	d := decision with input as h.subject("pro", "government_id")
	by_name(d).requests.capacity == 60
	by_name(d).requests.rate == 60
}

test_enterprise_tier_bucket if {
	d := decision with input as h.subject("enterprise", "business")
	by_name(d).requests.capacity == 600
	by_name(d).requests.rate == 600
}

test_unknown_tier_gets_the_default_tier if {
	d := decision with input as h.subject("platinum", "email")
	by_name(d).requests.capacity == 10
}

test_quota_key_is_per_subject if {
	doc := object.union(h.subject("free", "email"), {"subject": {"id": "other", "tier": "free", "kyc_level": "email"}})
	d := decision with input as doc
	by_name(d).requests.key == "subject:other:requests"
}

test_model_tokens_cost_the_estimate if {
	d := decision with input as model_request("free", "email", 4200)
	q := by_name(d).tokens
	q.unit == "tokens"
	q.cost == 4200
	q.key == "subject:s1:tokens"
	q.capacity == 100000
	q.rate == 100000
	q.period == 60
}

test_monthly_token_window_is_shared_by_the_org if {
	d := decision with input as model_request("pro", "government_id", 900)
	q := by_name(d).tokens_month
	q.kind == "window"
	q.window == "month"
	q.key == "org:acme:tokens_month"
	q.cost == 900
	q.capacity == 20000000
	not q.rate
}

test_subject_without_org_gets_its_own_window if {
	doc := object.union(model_request("free", "email", 10), {"subject": {"org": null}})
	d := decision with input as doc
	by_name(d).tokens_month.key == "subject:s1:tokens_month"
}

test_token_quotas_only_for_model_requests if {
	doc := object.union(model_request("free", "email", 10), {"request": {"dialect": null}})
	d := decision with input as doc
	{name | some name, _ in by_name(d)} == {"requests"}
}

test_reasoning_quota_only_where_reasoning_is_exposed if {
	free := decision with input as model_request("free", "email", 500)
	not by_name(free).reasoning_tokens
	enterprise := decision with input as model_request("enterprise", "business", 500)
	by_name(enterprise).reasoning_tokens.cost == 500
	by_name(enterprise).reasoning_tokens.on_store_error == "deny"
}

test_refused_requests_spend_no_quota if {
	d := decision with input as model_request("free", "none", 500)
	d.allow == false
	d.quotas == []
}
