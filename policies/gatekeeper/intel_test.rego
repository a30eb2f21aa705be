# Shared intelligence (docs/intel.md): an indicator that matched the request is a piece of
# evidence, `shared_intel`, weighted and counted as multi-account like the others.
package gatekeeper.intel_test

import data.gatekeeper.config as shipped
import data.gatekeeper.decision
import data.gatekeeper.distillation
import data.gatekeeper.distillation_test as t
import data.gatekeeper.test_fixtures as fixtures

intel_config := fixtures.patched({"distillation": {
	"intel": {"min_confidence": 50},
	"family": {"age_band": "30", "min_young_subjects": 20},
	"weights": {"shared_intel": 2, "family_spread": 2},
	"multi_account": ["cluster_huge", "cluster_heavy", "family_spread", "behaviour_cluster", "shared_intel"],
	"min_multi_account": {"watch": 1, "suspect": 2, "strong": 2},
}})

indicator(confidence) := {
	"id": "indicator--6a1f0c9e-0c35-4b5e-9a52-1f4f6a2b7d01",
	"kind": "network",
	"source": "Example Model Provider",
	"confidence": confidence,
}

# A young account on a datacenter network (1 + 1) whose address is in a shared prefix.
young := object.union(t.base, {"subject": {"account_age_days": 5}, "network": {"is_hosting": true}})

with_indicators(doc, indicators) := object.union(doc, {"signals": {"indicators": indicators}})

evidence(doc) := e if {
	e := distillation.evidence with input as doc with data.gatekeeper.config as intel_config
}

level(doc) := l if {
	l := distillation.level with input as doc with data.gatekeeper.config as intel_config
}

test_no_indicator_no_evidence if {
	not "shared_intel" in evidence(young)
	not "shared_intel" in evidence(with_indicators(young, []))
	level(young) == "none"
}

test_a_confident_indicator_is_evidence_and_grades_watch if {
	doc := with_indicators(young, [indicator(80)])
	"shared_intel" in evidence(doc)
	level(doc) == "watch"
	d := decision with input as doc with data.gatekeeper.config as intel_config
	d.allow
	d.reasoning.mode == "summary"
	"evidence:datacenter+new_account+shared_intel" in d.obligations.notes
}

test_an_indicator_below_min_confidence_is_not_evidence if {
	not "shared_intel" in evidence(with_indicators(young, [indicator(30)]))
	"shared_intel" in evidence(with_indicators(young, [indicator(30), indicator(50)]))
}

test_an_indicator_without_confidence_counts if {
	"shared_intel" in evidence(with_indicators(young, [indicator(null)]))
	"shared_intel" in evidence(with_indicators(young, [object.remove(indicator(0), ["confidence"])]))
}

test_a_match_alone_on_an_established_account_changes_nothing if {
	doc := with_indicators(t.base, [indicator(90)])
	"shared_intel" in evidence(doc)
	level(doc) == "none"
}

test_a_match_is_never_refused_without_other_multi_account_evidence if {
	# Young, datacenter, templated CoT and an indicator: weights 8, one multi-account piece.
	doc := with_indicators(object.union(young, {"signals": t.templated_cot}), [indicator(90)])
	distillation.score >= 7 with input as doc with data.gatekeeper.config as intel_config
	level(doc) == "watch"
}

test_a_match_beside_a_family_spread_is_suspect_or_worse if {
	doc := with_indicators(
		object.union(young, {"signals": {"family": {"id": "f-1", "subjects": 30, "subjects_by_age": {"30": 25}}}}),
		[indicator(90)],
	)
	level(doc) in {"suspect", "strong"}
}

test_the_shipped_pack_weighs_shared_intel_as_multi_account_evidence if {
	shipped.distillation.weights.shared_intel > 0
	"shared_intel" in shipped.distillation.multi_account
	is_number(shipped.distillation.intel.min_confidence)
	doc := with_indicators(young, [indicator(90)])
	"shared_intel" in distillation.evidence with input as doc
}
