# Tests of the shipped configuration (config/*/data.json) itself, evaluated with it rather than
# with the fixture the logic tests use (fixtures_test.rego). They check that the data is usable,
# not what its numbers are: tuning a limit, a threshold or a country list needs no edit here,
# only a change that breaks an invariant below does.
package gatekeeper.shipped_data_test

import data.gatekeeper.config
import data.gatekeeper.decision
import data.gatekeeper.decision_test_helpers as h

test_the_default_tier_exists if {
	config.tiers.tiers[config.tiers.default_tier]
}

test_every_tier_quota_is_a_usable_template if {
	every tier in config.tiers.tiers {
		count(tier.quotas) > 0
		every q in tier.quotas {
			is_string(q.name)
			q.unit in {"requests", "tokens", "reasoning_tokens"}
			q.capacity > 0
			q.on_store_error in {"deny", "allow", "local"}
		}
	}
}

test_every_kyc_level_named_in_the_data_exists if {
	config.kyc.levels[config.kyc.minimum]
	config.kyc.levels[config.jurisdictions.unknown_location_min_kyc]
	config.kyc.levels[config.launch.verified_kyc]
	every _, rule in config.reasoning.by_tier {
		config.kyc.levels[rule.min_kyc]
	}
}

test_distillation_levels_rise if {
	config.distillation.levels.watch < config.distillation.levels.suspect
	config.distillation.levels.suspect < config.distillation.levels.strong
	config.distillation.cot.elevated <= config.distillation.cot.high
}

test_a_verified_user_in_an_unrestricted_country_is_allowed if {
	d := decision with input as h.subject(config.tiers.default_tier, "business")
	d.allow
	count(d.quotas) > 0
}

test_every_restricted_country_is_refused if {
	every country in config.jurisdictions.restricted {
		doc := object.union(h.subject("free", "business"), {"network": {"country": country}})
		d := decision with input as doc
		d.status == 451
	}
}

test_every_cohort_budget_is_a_usable_reasoning_budget if {
	every entry in config.cohorts.cohorts {
		config.kyc.levels[entry.below_kyc]
		entry.budget.capacity > 0
		is_string(entry.budget.name)
	}
}

test_every_multi_account_evidence_has_a_weight if {
	every e in config.distillation.multi_account {
		config.distillation.weights[e] > 0
	}
}

# An account carrying multi-account evidence is metered no more loosely than one without, on
# every network type the other entry covers: a campaign gains nothing by being caught later.
test_the_evidence_cohort_is_no_looser_than_the_others if {
	evidence := [e | some e in config.cohorts.cohorts; e.min_multi_account]
	others := [e | some e in config.cohorts.cohorts; not e.min_multi_account]
	every e in evidence {
		every o in others {
			every t in [n | some n in ["hosting", "proxy", "other"]; covers(o, n)] {
				capacity(e, t) <= capacity(o, t)
			}
		}
	}
}

capacity(entry, t) := object.get(object.get(entry, "capacity_by_network_type", {}), t, entry.budget.capacity)

covers(entry, _) if not entry.network_types

covers(entry, t) if t in entry.network_types
