# Cohort budgets: reasoning exposed to a whole cohort of accounts (e.g. "accounts under 30 days,
# verified below business") is metered by one budget however many accounts the cohort has, so
# a campaign that opens more accounts gets no more reasoning. Configuration: config/cohorts.
#
# A cohort is the first entry of `cohorts` whose conditions the request meets (account age
# below `max_account_age_days` when given, KYC level below `below_kyc`, network type in
# `network_types` when given, tier in `tiers` when given, at least `min_multi_account` kinds
# of multi-account evidence when given: the distillation module's `multi_account`, for
# subjects it does not exempt); its key is the entry's name and, for each attribute in `by`,
# the request's value of it:
#   network_type  hosting | proxy | other (GeoIP flags, or the ASN lists of config/distillation)
#   tier, kyc, country, behaviour (the behavioural cluster's id, input.signals.behaviour.id)
# The budget is a quota template of scope "cohort" (keyed `cohort:<key>:<name>`), unit
# reasoning_tokens, named by `reasoning.budget_quota`: it never refuses; once spent, the
# response's reasoning degrades to `drop` (docs/reasoning.md, "The reasoning budget").
# An entry's `tool_budget` meters the cohort's tool-use requests the same way, and refuses;
# `tool_evidence` (evidence codes), when given, limits it to requests carrying one of them.
package gatekeeper.cohorts

# The cohort entry that applies (at most one: a decision names one budget quota).
entry := [e |
	some e in data.gatekeeper.config.cohorts.cohorts
	matches(e)
][0] if {
	data.gatekeeper.config.cohorts.enabled == true
}

matches(e) if {
	age_matches(e)
	network_matches(e)
	data.gatekeeper.config.kyc.levels[input.subject.kyc_level] < data.gatekeeper.config.kyc.levels[e.below_kyc]
	tier_matches(e)
	evidence_matches(e)
}

age_matches(e) if not e.max_account_age_days

age_matches(e) if {
	is_number(input.subject.account_age_days)
	input.subject.account_age_days < e.max_account_age_days
}

# A budget for subjects carrying evidence that spans accounts (a campaign's): honest accounts
# that merely look alike in age and network (a startup's CI in the cloud) are not metered with
# it, and an account does not escape it by being old. Exempt subjects never carry it.
evidence_matches(e) if not e.min_multi_account

evidence_matches(e) if {
	data.gatekeeper.distillation.multi_account >= e.min_multi_account
	not data.gatekeeper.distillation.exempt
}

# An entry for some network types only (`network_types`: hosting, proxy, other).
network_matches(e) if not e.network_types

network_matches(e) if network_type in e.network_types

tier_matches(e) if not e.tiers

tier_matches(e) if input.subject.tier in e.tiers

network_type := "hosting" if {
	true in {
		object.get(input.network, "is_hosting", false),
		object.get(data.gatekeeper.config.distillation.hosting_asns, sprintf("%v", [object.get(input.network, "asn", null)]), null) != null,
	}
} else := "proxy" if {
	true in {
		object.get(input.network, "is_proxy", false),
		object.get(data.gatekeeper.config.distillation.proxy_asns, sprintf("%v", [object.get(input.network, "asn", null)]), null) != null,
	}
} else := "other"

attribute("network_type") := network_type

attribute("tier") := sprintf("%v", [object.get(input.subject, "tier", "-")])

attribute("kyc") := sprintf("%v", [object.get(input.subject, "kyc_level", "-")])

attribute("country") := sprintf("%v", [object.get(input.network, "country", "-")])

attribute("behaviour") := sprintf("%v", [object.get(input.signals, ["behaviour", "id"], "-")])

key := concat("/", array.concat([entry.name], [attribute(a) | some a in object.get(entry, "by", [])]))

# The budget quota (a template: gatekeeper fills in the key from `cohort`, and the cost); its
# capacity per network type when the entry gives one.
capacity := object.get(object.get(entry, "capacity_by_network_type", {}), network_type, entry.budget.capacity)

default quotas := []

quotas := array.concat(
	[object.union(entry.budget, {
		"scope": "cohort",
		"cohort": key,
		"unit": "reasoning_tokens",
		"capacity": capacity,
		"rate": capacity,
	})],
	tool_quotas,
) if entry

# Tool use (an entry's `tool_budget`): requests that offer the model tools, counted for the
# whole cohort. Tool calls cannot be shaped away like reasoning, so this budget refuses (429,
# with the bucket's Retry-After) once spent; only requests with tools (or tool results) pay.
default tool_quotas := []

tool_quotas := [object.union(entry.tool_budget, {
	"scope": "cohort",
	"cohort": key,
	"unit": "requests",
	"capacity": tool_capacity,
	"rate": tool_capacity,
})] if {
	entry.tool_budget
	tool_evidence_matches
	true in {
		object.get(input.request, ["prompt_features", "has_tools"], false),
		object.get(input.request, ["prompt_features", "has_tool_results"], false),
	}
}

# Refusal wants evidence about what was sent or who sent it: the default pack lists shared
# identifiers and prompt families, not behavioural likeness (an honest agent with the same
# client and tool schemas as a campaign lands in its behavioural cluster).
tool_evidence_matches if not entry.tool_evidence

tool_evidence_matches if {
	some code in entry.tool_evidence
	code in data.gatekeeper.distillation.evidence
}

tool_capacity := object.get(object.get(entry, "tool_capacity_by_network_type", {}), network_type, entry.tool_budget.capacity)

budget_quota := entry.budget.name
