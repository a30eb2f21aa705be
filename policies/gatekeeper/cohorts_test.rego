package gatekeeper.cohorts_test

import data.gatekeeper.cohorts
import data.gatekeeper.decision
import data.gatekeeper.test_fixtures as fixtures

cohort_config := fixtures.patched({"cohorts": {
	"enabled": true,
	"cohorts": [{
		"name": "young_weak",
		"max_account_age_days": 30,
		"below_kyc": "business",
		"by": ["network_type", "tier"],
		"budget": {"name": "cohort_reasoning", "capacity": 1000, "rate": 1000, "period": 3600, "on_store_error": "local"},
		"capacity_by_network_type": {"proxy": 100},
	}],
}})

young(age, kyc, network) := {
	"version": 1,
	"subject": {"id": "s1", "org": "o1", "tier": "pro", "kyc_level": kyc, "account_age_days": age, "flags": []},
	"network": object.union({"client_ip": "192.0.2.7", "country": "DE", "jurisdiction_tags": []}, network),
	"request": {"method": "POST", "path": "/v1/chat/completions", "dialect": "openai_chat", "model": "m", "estimated_tokens": 300},
	"signals": {"available": true},
	"time": {"unix_ns": 0, "rfc3339": "1970-01-01T00:00:00Z", "weekday": 3, "hour_utc": 0},
}

test_young_unverified_accounts_share_one_budget_per_cohort if {
	[q] := cohorts.quotas with input as young(3, "government_id", {}) with data.gatekeeper.config as cohort_config
	q.scope == "cohort"
	q.cohort == "young_weak/other/pro"
	q.capacity == 1000
	q.unit == "reasoning_tokens"
}

test_the_budget_depends_on_the_network_type if {
	[q] := cohorts.quotas with input as young(3, "government_id", {"is_proxy": true}) with data.gatekeeper.config as cohort_config
	q.cohort == "young_weak/proxy/pro"
	q.capacity == 100
}

test_old_or_business_accounts_have_no_cohort_budget if {
	cohorts.quotas == [] with input as young(300, "government_id", {}) with data.gatekeeper.config as cohort_config
	cohorts.quotas == [] with input as young(3, "business", {}) with data.gatekeeper.config as cohort_config
}

test_the_decision_names_the_budget_quota_and_never_refuses_for_it if {
	d := decision with input as young(3, "government_id", {}) with data.gatekeeper.config as cohort_config
	d.allow
	d.reasoning.budget_quota == "cohort_reasoning"
	some q in d.quotas
	q.name == "cohort_reasoning"
}

# A budget for subjects carrying multi-account evidence (any age), then one for young accounts.
evidence_cohort_config := fixtures.patched({"distillation": {"multi_account": ["cluster_large", "family_spread"]}, "cohorts": {
	"enabled": true,
	"cohorts": [
		{
			"name": "multi_account",
			"min_multi_account": 1,
			"below_kyc": "business",
			"by": ["network_type"],
			"budget": {"name": "cohort_reasoning", "capacity": 1000, "rate": 1000, "period": 3600, "on_store_error": "local"},
			"capacity_by_network_type": {"hosting": 100},
		},
		{
			"name": "young",
			"max_account_age_days": 30,
			"below_kyc": "business",
			"by": ["network_type"],
			"budget": {"name": "cohort_reasoning", "capacity": 5000, "rate": 5000, "period": 3600, "on_store_error": "local"},
		},
	],
}})

# Many accounts linked into one cluster: multi-account evidence (cluster_large).
spread(doc) := object.union(doc, {"signals": {"available": true, "cluster": {"id": "c-1", "size": 60}}})

test_subjects_with_multi_account_evidence_share_the_evidence_budget if {
	[q] := cohorts.quotas with input as spread(young(3, "government_id", {"is_hosting": true})) with data.gatekeeper.config as evidence_cohort_config
	q.cohort == "multi_account/hosting"
	q.capacity == 100
}

test_old_accounts_with_multi_account_evidence_do_not_escape_the_budget if {
	[q] := cohorts.quotas with input as spread(young(400, "government_id", {"is_hosting": true})) with data.gatekeeper.config as evidence_cohort_config
	q.cohort == "multi_account/hosting"
}

test_young_accounts_without_evidence_get_the_young_budget_not_the_campaigns if {
	[q] := cohorts.quotas with input as young(3, "government_id", {"is_hosting": true}) with data.gatekeeper.config as evidence_cohort_config
	q.cohort == "young/hosting"
	q.capacity == 5000
}

test_old_accounts_without_evidence_have_no_cohort_budget if {
	cohorts.quotas == [] with input as young(400, "government_id", {"is_hosting": true}) with data.gatekeeper.config as evidence_cohort_config
}

test_business_or_exempt_accounts_are_not_metered_by_the_evidence_budget if {
	cohorts.quotas == [] with input as spread(young(400, "business", {})) with data.gatekeeper.config as evidence_cohort_config
	exempt := json.patch(spread(young(400, "government_id", {})), [{"op": "replace", "path": "/subject/flags", "value": ["distillation_exempt"]}])
	cohorts.quotas == [] with input as exempt with data.gatekeeper.config as evidence_cohort_config
}

# --- tool use (issue 18, item 4) -------------------------------------------------------------

tool_cohort_config := json.patch(evidence_cohort_config, [
	{"op": "add", "path": "/cohorts/cohorts/0/tool_budget", "value": {"name": "cohort_tool_requests", "capacity": 50, "rate": 50, "period": 3600, "on_store_error": "local"}},
	{"op": "add", "path": "/cohorts/cohorts/0/tool_capacity_by_network_type", "value": {"hosting": 10}},
])

with_tools(doc, features) := object.union(doc, {"request": {"prompt_features": features}})

test_tool_use_of_a_campaign_cohort_pays_a_request_budget if {
	doc := with_tools(spread(young(3, "government_id", {"is_hosting": true})), {"has_tools": true})
	qs := cohorts.quotas with input as doc with data.gatekeeper.config as tool_cohort_config
	by_name := {q.name: q | some q in qs}
	by_name.cohort_tool_requests.unit == "requests"
	by_name.cohort_tool_requests.cohort == "multi_account/hosting"
	by_name.cohort_tool_requests.capacity == 10
	by_name.cohort_reasoning.unit == "reasoning_tokens"
}

test_a_tool_result_turn_pays_too_and_other_networks_get_the_default if {
	doc := with_tools(spread(young(3, "government_id", {})), {"has_tool_results": true})
	qs := cohorts.quotas with input as doc with data.gatekeeper.config as tool_cohort_config
	some q in qs
	q.name == "cohort_tool_requests"
	q.capacity == 50
}

test_requests_without_tools_and_cohorts_without_a_tool_budget_pay_nothing if {
	plain := spread(young(3, "government_id", {"is_hosting": true}))
	[q] := cohorts.quotas with input as plain with data.gatekeeper.config as tool_cohort_config
	q.name == "cohort_reasoning"
	honest := with_tools(young(3, "government_id", {"is_hosting": true}), {"has_tools": true})
	[r] := cohorts.quotas with input as honest with data.gatekeeper.config as tool_cohort_config
	r.cohort == "young/hosting"
}

test_tool_evidence_limits_the_tool_budget_to_the_evidence_it_names if {
	doc := with_tools(spread(young(3, "government_id", {"is_hosting": true})), {"has_tools": true})
	named := json.patch(tool_cohort_config, [{"op": "add", "path": "/cohorts/cohorts/0/tool_evidence", "value": ["cluster_large"]}])
	{q.name | some q in cohorts.quotas with input as doc with data.gatekeeper.config as named} == {"cohort_reasoning", "cohort_tool_requests"}
	other := json.patch(tool_cohort_config, [{"op": "add", "path": "/cohorts/cohorts/0/tool_evidence", "value": ["family_spread"]}])
	[q] := cohorts.quotas with input as doc with data.gatekeeper.config as other
	q.name == "cohort_reasoning"
	q.cohort == "multi_account/hosting"
}

# --- an entry for some network types only ------------------------------------------------------

network_cohort_config := json.patch(evidence_cohort_config, [{"op": "add", "path": "/cohorts/cohorts/0", "value": {
	"name": "proxied",
	"network_types": ["proxy"],
	"below_kyc": "business",
	"budget": {"name": "cohort_reasoning", "capacity": 300, "rate": 300, "period": 3600, "on_store_error": "local"},
}}])

test_a_network_types_entry_meters_every_unverified_account_on_those_networks if {
	# Old, no evidence: outside every other entry, inside this one.
	[q] := cohorts.quotas with input as young(400, "government_id", {"is_proxy": true}) with data.gatekeeper.config as network_cohort_config
	q.cohort == "proxied"
	q.capacity == 300
	[r] := cohorts.quotas with input as spread(young(400, "government_id", {"is_proxy": true})) with data.gatekeeper.config as network_cohort_config
	r.cohort == "proxied"
}

test_a_network_types_entry_leaves_other_networks_and_business_accounts_alone if {
	[q] := cohorts.quotas with input as spread(young(400, "government_id", {"is_hosting": true})) with data.gatekeeper.config as network_cohort_config
	q.cohort == "multi_account/hosting"
	cohorts.quotas == [] with input as young(400, "government_id", {}) with data.gatekeeper.config as network_cohort_config
	cohorts.quotas == [] with input as young(400, "business", {"is_proxy": true}) with data.gatekeeper.config as network_cohort_config
}
