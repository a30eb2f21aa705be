package gatekeeper.distillation_test

import data.gatekeeper.decision
import data.gatekeeper.distillation
import data.gatekeeper.test_fixtures as fixtures

# 2026-11-28T00:00:00Z
now_ns := 1795824000000000000

usage(requests, reasoning_share, template_count) := {
	"requests": {"10m": requests, "1h": requests, "24h": requests},
	"tokens": {"10m": 0, "1h": 0, "24h": 0},
	"reasoning_requests": {"10m": 0, "1h": 0, "24h": 0},
	"reasoning_tokens": {"10m": 0, "1h": 0, "24h": 0},
	"refused": {"10m": 0, "1h": 0, "24h": 0},
	"reasoning_share": reasoning_share,
	"template_count": template_count,
}

quiet := {
	"available": true,
	"subject": object.union(usage(3, 0.3, 0), {"account_age_days": 400}),
	"cluster": object.union(usage(3, 0.3, 0), {"id": "c-abc", "size": 1, "linked_by": []}),
	"cot_elicitation": 0,
	"cot_patterns": [],
	"template_hash": "0123456789abcdef",
	"template_repetition": 0.25,
}

base := {
	"version": 1,
	"subject": {
		"id": "s1", "org": "o1", "tier": "enterprise", "kyc_level": "business", "kyc_rank": 5,
		"account_age_days": 400, "flags": [],
	},
	"network": {
		"client_ip": "192.0.2.7", "country": "DE", "asn": 64501, "is_hosting": false,
		"is_proxy": false, "jurisdiction_tags": [],
	},
	"request": {
		"method": "POST", "path": "/v1/chat/completions", "dialect": "openai_chat",
		"model": "test-model", "stream": false, "reasoning_requested": true, "estimated_tokens": 300,
	},
	"signals": quiet,
	"time": {"unix_ns": now_ns, "rfc3339": "2026-11-28T00:00:00Z", "weekday": 5, "hour_utc": 0},
}

# `base` with `patch` merged into its signals (object.union merges nested objects).
signals(patch) := object.union(base, {"signals": patch})

as_subject(doc, tier, level) := object.union(doc, {"subject": {"tier": tier, "kyc_level": level}})

# CoT-eliciting (0.8 >= high), templated (count 6, share 0.6): weights 2 + 2 = 4 (watch).
templated_cot := {"cot_elicitation": 0.8, "template_repetition": 0.6, "subject": {"template_count": 6}}

# ... plus a cluster of 12 (large): 5 (suspect).
suspect_signals := object.union(templated_cot, {"cluster": {"size": 12}})

# ... plus a cluster of 50 (huge) on a hosting network: 7 with every required piece (strong).
strong_signals := object.union(templated_cot, {"cluster": {"size": 50}})

strong_doc := object.union(signals(strong_signals), {"network": {"is_hosting": true}})

by_name(d) := {q.name: q | some q in d.quotas}

evidence_of(doc) := e if {
	e := distillation.evidence with input as doc with data.gatekeeper.config as fixtures.config
}

# --- no signals, pack off ----------------------------------------------------------------

test_no_signals_changes_nothing if {
	doc := object.union(base, {"signals": {"available": false}})
	d := decision with input as doc with data.gatekeeper.config as fixtures.config
	d.allow
	d.reasoning == {"mode": "full"}
	d.obligations == {}
	not by_name(d).cluster_requests
	distillation.level == "none" with input as doc with data.gatekeeper.config as fixtures.config
}

test_empty_signals_object_changes_nothing if {
	d := decision with input as json.remove(base, ["signals"]) with data.gatekeeper.config as fixtures.config
	d.allow
	d.reasoning.mode == "full"
	d.obligations == {}
}

test_quiet_signals_change_nothing if {
	d := decision with input as base with data.gatekeeper.config as fixtures.config
	d.allow
	d.reasoning.mode == "full"
	d.obligations == {}
	distillation.level == "none" with input as base with data.gatekeeper.config as fixtures.config
}

test_disabled_pack_ignores_strong_evidence if {
	d := decision with input as strong_doc with data.gatekeeper.config as fixtures.patched({"distillation": {"enabled": false}})
	d.allow
	d.reasoning.mode == "full"
}

# --- evidence, one rule at a time ----------------------------------------------------------

test_cot_elevated_below_high if {
	e := evidence_of(signals({"cot_elicitation": 0.5}))
	e == {"cot_elevated"}
}

test_cot_high_is_also_elevated if {
	e := evidence_of(signals({"cot_elicitation": 0.7}))
	e == {"cot_elevated", "cot_high"}
}

test_templated_needs_count_and_share if {
	evidence_of(signals({"template_repetition": 0.6, "subject": {"template_count": 5}})) == {"templated"}
	evidence_of(signals({"template_repetition": 0.6, "cluster": {"template_count": 9}})) == {"templated"}
	evidence_of(signals({"template_repetition": 0.6, "subject": {"template_count": 4}})) == set()
	evidence_of(signals({"template_repetition": 0.2, "subject": {"template_count": 50}})) == set()
}

test_reasoning_heavy_needs_volume_and_share if {
	evidence_of(signals({"subject": usage(20, 0.95, 0)})) == {"reasoning_heavy"}
	evidence_of(signals({"subject": usage(19, 1, 0)})) == set()
	evidence_of(signals({"subject": usage(200, 0.5, 0)})) == set()
}

test_cluster_size_evidence if {
	evidence_of(signals({"cluster": {"size": 8}})) == {"cluster_large"}
	evidence_of(signals({"cluster": {"size": 50}})) == {"cluster_large", "cluster_huge"}
	evidence_of(signals({"cluster": {"size": 49}})) == {"cluster_large"}
	evidence_of(signals({"cluster": {"size": 7}})) == set()
}

test_cluster_heavy_is_combined_usage if {
	evidence_of(signals({"cluster": usage(2000, 0.5, 0)})) == {"cluster_heavy"}
	evidence_of(signals({"cluster": usage(1999, 0.5, 0)})) == set()
}

test_datacenter_from_geoip_flags if {
	evidence_of(object.union(base, {"network": {"is_hosting": true}})) == {"datacenter"}
	evidence_of(object.union(base, {"network": {"is_proxy": true}})) == {"datacenter"}
}

test_datacenter_from_asn_lists if {
	evidence_of(object.union(base, {"network": {"asn": 64500}})) == {"datacenter"}
	evidence_of(object.union(base, {"network": {"asn": 64511}})) == {"datacenter"}
	evidence_of(object.union(base, {"network": {"asn": null}})) == set()
}

test_new_account if {
	evidence_of(object.union(base, {"subject": {"account_age_days": 3.5}})) == {"new_account"}
	evidence_of(object.union(base, {"subject": {"account_age_days": null}})) == set()
}

# --- graded responses ----------------------------------------------------------------------

test_watch_caps_full_reasoning_to_a_summary if {
	doc := signals(templated_cot)
	distillation.level == "watch" with input as doc with data.gatekeeper.config as fixtures.config
	d := decision with input as doc with data.gatekeeper.config as fixtures.config
	d.allow
	d.reasoning == {"mode": "summary", "max_tokens": 32}
	d.obligations.flag_for_review == false
	d.obligations.notes == ["distillation:watch", "evidence:cot_elevated+cot_high+templated"]
	by_name(d).cluster_requests.scope == "cluster"
	by_name(d).cluster_requests.capacity == 1200
}

test_watch_tightens_a_summary_budget if {
	# pro with government_id is sold a 64-token summary; watch caps it at 32.
	d := decision with input as as_subject(signals(templated_cot), "pro", "government_id") with data.gatekeeper.config as fixtures.config
	d.reasoning == {"mode": "summary", "max_tokens": 32}
}

test_a_looser_cap_changes_nothing if {
	d := decision with input as as_subject(signals(templated_cot), "pro", "government_id")
		with data.gatekeeper.config as fixtures.patched({"distillation": {"responses": {"watch": {"reasoning": {"mode": "summary", "max_tokens": 500}}}}})
	d.reasoning == {"mode": "summary", "max_tokens": 64}
}

test_exempt_flag_clears_a_reviewed_account if {
	doc := object.union(strong_doc, {"subject": {"flags": ["distillation_exempt"]}})
	distillation.level == "none" with input as doc with data.gatekeeper.config as fixtures.config
	d := decision with input as doc with data.gatekeeper.config as fixtures.config
	d.allow
	d.reasoning.mode == "full"
	d.obligations == {}
}

watch_exempt_config := fixtures.patched({"distillation": {"responses": {"watch": {"exempt_min_kyc": "business"}}}})

test_watch_leaves_a_business_verified_account_its_reasoning if {
	# A company's team on one office address, one internal tool: watch, noted, not shaped.
	doc := as_subject(signals(templated_cot), "enterprise", "business")
	distillation.level == "watch" with input as doc with data.gatekeeper.config as watch_exempt_config
	d := decision with input as doc with data.gatekeeper.config as watch_exempt_config
	d.allow
	d.reasoning.mode == "full"
	d.obligations.notes[0] == "distillation:watch"
	by_name(d).cluster_requests.capacity == 1200
	# Below business verification the same traffic is capped.
	e := decision with input as as_subject(signals(templated_cot), "pro", "government_id") with data.gatekeeper.config as watch_exempt_config
	e.reasoning == {"mode": "summary", "max_tokens": 32}
}

test_suspect_evidence_shapes_business_verified_accounts_too if {
	doc := as_subject(signals(suspect_signals), "enterprise", "business")
	distillation.level == "suspect" with input as doc with data.gatekeeper.config as watch_exempt_config
	d := decision with input as doc with data.gatekeeper.config as watch_exempt_config
	d.reasoning.mode == "drop"
}

test_watch_never_raises_exposure if {
	d := decision with input as as_subject(signals(templated_cot), "free", "email") with data.gatekeeper.config as fixtures.config
	d.reasoning.mode == "drop"
}

test_suspect_drops_reasoning_tightens_quotas_and_flags if {
	doc := as_subject(signals(suspect_signals), "pro", "government_id")
	distillation.level == "suspect" with input as doc with data.gatekeeper.config as fixtures.config
	d := decision with input as doc with data.gatekeeper.config as fixtures.config
	d.allow
	d.reasoning.mode == "drop"
	d.obligations.flag_for_review
	not d.obligations.step_up_kyc
	by_name(d).cluster_requests.capacity == 120
	by_name(d).cluster_requests.scope == "cluster"
	by_name(d).distillation_requests == {
		"name": "distillation_requests", "scope": "subject", "unit": "requests",
		"capacity": 20, "rate": 20, "period": 3600, "on_store_error": "local",
	}
	by_name(d).requests.capacity == 60 # the tier's own quotas still apply
}

test_suspect_below_the_step_up_level_is_403_naming_it if {
	d := decision with input as as_subject(signals(suspect_signals), "pro", "payment") with data.gatekeeper.config as fixtures.config
	not d.allow
	d.status == 403
	d.reasons[0].code == "kyc_step_up_required"
	contains(d.reasons[0].message, "government_id")
	d.obligations.step_up_kyc == "government_id"
	d.obligations.flag_for_review
}

test_strong_evidence_is_refused if {
	doc := as_subject(strong_doc, "pro", "government_id")
	distillation.level == "strong" with input as doc with data.gatekeeper.config as fixtures.config
	d := decision with input as doc with data.gatekeeper.config as fixtures.config
	not d.allow
	d.status == 403
	d.reasons[0].code == "distillation_suspected"
	d.obligations.flag_for_review
	d.quotas == []
}

test_strong_needs_every_required_piece if {
	# Weight 8 without a huge cluster: suspect, not refused.
	doc := as_subject(
		object.union(signals(object.union(templated_cot, {"cluster": object.union(usage(5000, 1, 0), {"size": 12})})), {"network": {"is_hosting": true}, "subject": {"account_age_days": 2}}),
		"pro", "government_id",
	)
	distillation.score == 8 with input as doc with data.gatekeeper.config as fixtures.config
	distillation.level == "suspect" with input as doc with data.gatekeeper.config as fixtures.config
	d := decision with input as doc with data.gatekeeper.config as fixtures.config
	d.allow
	d.reasoning.mode == "drop"
}

test_strong_against_business_kyc_gets_the_suspect_response if {
	d := decision with input as strong_doc with data.gatekeeper.config as fixtures.config
	d.allow
	d.reasoning.mode == "drop"
	d.obligations.flag_for_review
	by_name(d).distillation_requests.capacity == 20
}

test_strong_with_weak_kyc_is_refused_not_stepped_up if {
	d := decision with input as as_subject(strong_doc, "free", "email") with data.gatekeeper.config as fixtures.config
	[r.code | some r in d.reasons] == ["distillation_suspected"]
}

test_refusal_can_be_shadowed if {
	doc := as_subject(strong_doc, "pro", "government_id")
	d := decision with input as doc with data.gatekeeper.config as fixtures.patched({"shadow": {"codes": ["distillation_suspected"]}})
	not d.allow
	d.shadow
	d.reasons[0].code == "distillation_suspected"
	d.reasoning.mode == "drop"
}

test_kyc_insufficient_keeps_its_step_up_beside_the_flag if {
	d := decision with input as as_subject(strong_doc, "free", "none") with data.gatekeeper.config as fixtures.config
	d.reasons[0].code == "kyc_insufficient"
	d.obligations.step_up_kyc == "email"
	d.obligations.flag_for_review
}

test_thresholds_come_from_data if {
	doc := signals({"cot_elicitation": 0.5})
	distillation.level == "watch" with input as doc with data.gatekeeper.config as fixtures.patched({"distillation": {"levels": {"watch": 1, "suspect": 5, "strong": 7}}})
}

# --- launch window -------------------------------------------------------------------------

releases := {"test-model": "2026-11-25T00:00:00Z"}

new_account := object.union(base, {"subject": {"account_age_days": 5}})

test_launch_window_caps_new_accounts if {
	d := decision with input as new_account with data.gatekeeper.config as fixtures.patched({"launch": {"releases": releases}})
	d.allow
	d.reasoning == {"mode": "summary", "max_tokens": 64}
	by_name(d).launch_requests.capacity == 30
	by_name(d).launch_tokens.unit == "tokens"
}

test_launch_window_caps_weakly_verified_accounts if {
	doc := as_subject(base, "pro", "payment")
	d := decision with input as doc with data.gatekeeper.config as fixtures.patched({"launch": {"releases": releases}})
	by_name(d).launch_requests.capacity == 30
}

test_launch_window_spares_old_verified_accounts if {
	d := decision with input as base with data.gatekeeper.config as fixtures.patched({"launch": {"releases": releases}})
	not by_name(d).launch_requests
	d.reasoning.mode == "full"
}

test_launch_window_ends if {
	old := {"test-model": "2026-11-10T00:00:00Z"}
	d := decision with input as new_account with data.gatekeeper.config as fixtures.patched({"launch": {"releases": old}})
	not by_name(d).launch_requests
}

test_launch_window_starts_at_the_release if {
	later := {"test-model": "2026-12-01T00:00:00Z"}
	d := decision with input as new_account with data.gatekeeper.config as fixtures.patched({"launch": {"releases": later}})
	not by_name(d).launch_requests
}

test_launch_window_only_for_released_models if {
	d := decision with input as new_account with data.gatekeeper.config as fixtures.config
	not by_name(d).launch_requests
}

test_lowest_cap_wins if {
	# watch (summary, 32 tokens) and the launch window (summary, 64): the tighter one applies.
	patch := {"cot_elicitation": 0.5, "template_repetition": 0.6, "subject": {"template_count": 6}}
	doc := object.union(signals(patch), {"subject": {"account_age_days": 5}})
	d := decision with input as doc with data.gatekeeper.config as fixtures.patched({"launch": {"releases": releases}})
	d.obligations.notes[0] == "distillation:watch"
	d.reasoning == {"mode": "summary", "max_tokens": 32}
	by_name(d).launch_requests
}

# --- multi-account evidence (issue 18) -------------------------------------------------------

# The fixture with the evidence that spans accounts, and the rule that a level needs it.
multi_config := fixtures.patched({"distillation": {
	"template": {"min_count": 5, "min_share": 0.3, "min_repeat_share": 0.6},
	"reasoning_heavy": {"min_requests": 20, "min_share": 0.9, "share_of": "exposed_share"},
	"family": {"age_band": "30", "min_young_subjects": 20},
	"behaviour": {"age_band": "30", "min_young_subjects": 20, "min_young_share": 0.5, "min_exposed_share": 0.9},
	"weights": {"family_spread": 2, "behaviour_cluster": 2},
	"multi_account": ["cluster_huge", "cluster_heavy", "family_spread", "behaviour_cluster"],
	"min_multi_account": {"watch": 1, "suspect": 2, "strong": 2},
	"strong_requires": ["templated"],
}})

# One heavy, templated, CoT-asking young account on a datacenter: its own pattern only.
loner := object.union(signals({
	"cot_elicitation": 0.8,
	"subject": {"repeat_share": 0.95, "exposed_share": 1, "requests": {"1h": 80}},
}), {"subject": {"account_age_days": 5}, "network": {"is_hosting": true}})

test_rotated_templates_are_templated_by_repeat_share if {
	"templated" in distillation.evidence with input as loner with data.gatekeeper.config as multi_config
}

test_reasoning_heavy_reads_reasoning_exposed if {
	"reasoning_heavy" in distillation.evidence with input as loner with data.gatekeeper.config as multi_config
	asked_only := object.union(loner, {"signals": {"subject": {"exposed_share": 0, "reasoning_share": 1}}})
	not "reasoning_heavy" in distillation.evidence with input as asked_only with data.gatekeeper.config as multi_config
}

test_no_single_accounts_pattern_is_graded if {
	distillation.score >= 7 with input as loner with data.gatekeeper.config as multi_config
	distillation.level == "none" with input as loner with data.gatekeeper.config as multi_config
}

test_a_family_spread_over_young_accounts_grades_watch if {
	doc := object.union(loner, {"signals": {"family": {"id": "f-1", "subjects": 30, "subjects_by_age": {"30": 25}}}})
	"family_spread" in distillation.evidence with input as doc with data.gatekeeper.config as multi_config
	distillation.level == "watch" with input as doc with data.gatekeeper.config as multi_config
}

test_two_kinds_of_multi_account_evidence_are_refused if {
	doc := object.union(loner, {"signals": {
		"family": {"id": "f-1", "subjects": 30, "subjects_by_age": {"30": 25}},
		"behaviour": {"id": "c-b", "size": 40, "subjects_by_age": {"30": 30}},
	}, "subject": {"kyc_level": "government_id", "tier": "pro"}})
	distillation.level == "strong" with input as doc with data.gatekeeper.config as multi_config
	d := decision with input as doc with data.gatekeeper.config as multi_config
	d.status == 403
	d.reasons[0].code == "distillation_suspected"
}

test_a_behavioural_cluster_needs_the_account_to_be_reasoning_heavy if {
	doc := object.union(signals({"behaviour": {"id": "c-b", "size": 40, "subjects_by_age": {"30": 30}}}), {})
	not "behaviour_cluster" in distillation.evidence with input as doc with data.gatekeeper.config as multi_config
}

# The hydras scenario's honest users with default clients chained into one behavioural cluster
# of 185 accounts, 22 of them young: a student and a classroom in it are not a campaign.
test_a_mostly_old_behavioural_cluster_is_not_evidence if {
	young := object.union(loner, {"signals": {"behaviour": {"id": "c-b", "size": 40, "subjects_by_age": {"30": 22}}}})
	"behaviour_cluster" in distillation.evidence with input as young with data.gatekeeper.config as multi_config
	mixed := object.union(loner, {"signals": {"behaviour": {"id": "c-b", "size": 185, "subjects_by_age": {"30": 22}}}})
	not "behaviour_cluster" in distillation.evidence with input as mixed with data.gatekeeper.config as multi_config
	distillation.level == "none" with input as mixed with data.gatekeeper.config as multi_config
}

# --- launch surges: the model shift (issue 18) -----------------------------------------------

shift_config := fixtures.patched({
	"launch": {"releases": releases, "shift": {"weak_min_share": 0.5, "min_cluster_subjects": 10}},
	"distillation": {
		"weights": {"launch_shift": 1, "launch_surge": 2},
		"multi_account": ["cluster_huge", "launch_surge"],
		"min_multi_account": {"watch": 1, "suspect": 2, "strong": 2},
	},
})

shift(moved, recent, cluster) := {"model_shift": {
	"model": "test-model", "recent_share": recent, "prior_share": 0, "prior_requests": 40,
	"moved": moved, "cluster_moved": cluster, "subjects_moved": cluster,
}}

test_a_new_account_trying_a_fresh_model_is_not_capped if {
	doc := object.union(signals(shift(false, 0.2, 0)), {"subject": {"account_age_days": 5}})
	d := decision with input as doc with data.gatekeeper.config as shift_config
	not by_name(d).launch_requests
	d.reasoning.mode == "full"
}

test_a_new_account_mostly_on_a_fresh_model_is_capped if {
	doc := object.union(signals(shift(false, 0.8, 0)), {"subject": {"account_age_days": 5}})
	d := decision with input as doc with data.gatekeeper.config as shift_config
	by_name(d).launch_requests.capacity == 30
}

test_a_verified_account_that_moved_alone_is_not_capped if {
	doc := signals(shift(true, 0.9, 1))
	"launch_shift" in distillation.evidence with input as doc with data.gatekeeper.config as shift_config
	d := decision with input as doc with data.gatekeeper.config as shift_config
	not by_name(d).launch_requests
	d.reasoning.mode == "full"
}

test_a_cluster_that_moved_together_is_capped_and_graded if {
	doc := object.union(signals(shift(true, 0.9, 12)), {"network": {"is_hosting": true}})
	ev := distillation.evidence with input as doc with data.gatekeeper.config as shift_config
	{"launch_shift", "launch_surge", "datacenter"} == ev
	distillation.level == "watch" with input as doc with data.gatekeeper.config as shift_config
	d := decision with input as doc with data.gatekeeper.config as shift_config
	by_name(d).launch_requests
	d.reasoning == {"mode": "summary", "max_tokens": 32}
}

test_a_move_to_a_model_outside_the_launch_window_is_no_evidence if {
	doc := signals(shift(true, 0.9, 12))
	old := fixtures.patched({
		"launch": {"releases": {"test-model": "2026-11-10T00:00:00Z"}, "shift": {"min_cluster_subjects": 10}},
		"distillation": {"weights": {"launch_shift": 1, "launch_surge": 2}},
	})
	ev := distillation.evidence with input as doc with data.gatekeeper.config as old
	not "launch_shift" in ev
	not "launch_surge" in ev
	d := decision with input as doc with data.gatekeeper.config as old
	not by_name(d).launch_requests
}
