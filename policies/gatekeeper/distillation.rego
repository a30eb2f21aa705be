# Anti-extraction: graduated responses to the distillation signals (input.signals), and the
# launch-window caps. Every threshold lives in config/distillation and config/launch
# (docs/distillation.md explains each one and how to tune it).
#
# Evidence: named facts about the request (a chain-of-thought-eliciting prompt, a repeated
# template, a large account cluster, a datacenter network, ...), each with a weight. The sum of
# the weights grades the request:
#   none     nothing happens;
#   watch    the reasoning is capped (a short summary) and a loose cluster quota applies;
#   suspect  no reasoning, tight subject and cluster quotas, flagged for review, and a step-up
#            to a stronger KYC level (403 kyc_step_up_required) for accounts below it;
#   strong   refused (403 distillation_suspected), only when the weights reach the threshold
#            AND every piece of evidence in `strong_requires` is there; accounts verified at
#            `exempt_min_kyc` or above get the suspect response instead.
#
# Cost (this runs on every request, and regorus holds the GIL): nothing past `level` is
# evaluated unless the signal stage ran; every test is a comparison or an object lookup, never a
# loop over a list. Measured with regorus 0.13, every rule evaluated and every `data.` path
# looked up costs about as much as a handful of comparisons, so the evidence is one
# comprehension that reads the configuration once (`c`), not one rule per piece of evidence.
package gatekeeper.distillation

# --- evidence ------------------------------------------------------------------------------

# The pieces of evidence present. Missing signals count as absent (object.get defaults), so a
# partial input document (a test's, a replayed log's) grades as calmly as an empty one.
# `input.signals` is named in each object.get, not bound to a variable once: gatekeeper hands
# the policy only the input paths it reads (docs/policy-authoring.md, "Evaluators"), and a
# path under a variable cannot be seen, so `s := input.signals` would send every signal. For
# the same reason a key taken from the configuration names its full `data.` path, not `c`:
# gatekeeper reads such a key from the data, and hands the policy that one field.
evidence := {name |
	c := data.gatekeeper.config.distillation
	cot := object.get(input.signals, "cot_elicitation", 0)
	size := object.get(input.signals, ["cluster", "size"], 1)
	age := object.get(input.subject, "account_age_days", null)
	asn := sprintf("%v", [object.get(input.network, "asn", null)])
	some name, present in {
		"cot_elevated": cot >= c.cot.elevated,
		"cot_high": cot >= c.cot.high,
		# One template filled in again and again, or a few rotated or reworded ones: most of the
		# subject's prompts repeat a prompt family it already sent (repeat_share).
		"templated": true in {
			[
				object.get(input.signals, "template_repetition", 0) >= c.template.min_share,
				max([object.get(input.signals, ["subject", "template_count"], 0), object.get(input.signals, ["cluster", "template_count"], 0)]) >= c.template.min_count,
			] == [true, true],
			[
				object.get(input.signals, ["subject", "repeat_share"], 0) >= object.get(c.template, "min_repeat_share", 2),
				object.get(input.signals, ["subject", "requests", data.gatekeeper.config.distillation.window], 0) >= c.template.min_count,
			] == [true, true],
		},
		# Reasoning actually shown to the client (`share_of`: exposed_share), not asked for.
		"reasoning_heavy": [
			object.get(input.signals, ["subject", object.get(data.gatekeeper.config.distillation.reasoning_heavy, "share_of", "reasoning_share")], 0) >= c.reasoning_heavy.min_share,
			object.get(input.signals, ["subject", "requests", data.gatekeeper.config.distillation.window], 0) >= c.reasoning_heavy.min_requests,
		] == [true, true],
		# One prompt family sent by many young accounts (near-duplicates, any wording).
		"family_spread": object.get(input.signals, ["family", "subjects_by_age", object.get(data.gatekeeper.config.distillation, ["family", "age_band"], "30")], 0) >= object.get(c, ["family", "min_young_subjects"], 1e12),
		# Many young accounts whose usage fingerprints are alike, most of the cluster young, this
		# one reasoning-heavy. The young share keeps out the large mixed-age clusters honest
		# users with default clients chain into (a campaign's accounts are mostly new).
		"behaviour_cluster": [
			behaviour_young >= object.get(c, ["behaviour", "min_young_subjects"], 1e12),
			behaviour_young >= object.get(c, ["behaviour", "min_young_share"], 0) * object.get(input.signals, ["behaviour", "size"], 1),
			object.get(input.signals, ["subject", "exposed_share"], 0) >= object.get(c, ["behaviour", "min_exposed_share"], 0),
		] == [true, true, true],
		# A shared-intelligence indicator matched (input.signals.indicators, docs/intel.md),
		# one with a confidence of `intel.min_confidence` or more, or with none given. The list
		# is empty for almost every request, so the comprehension costs nothing.
		"shared_intel": count([i | some i in object.get(input.signals, "indicators", []); intel_confident(i, c)]) > 0,
		"cluster_large": size >= c.cluster.large,
		"cluster_huge": size >= c.cluster.huge,
		"cluster_heavy": object.get(input.signals, ["cluster", "requests", data.gatekeeper.config.distillation.window], 0) >= c.cluster.heavy_requests,
		"datacenter": true in {
			object.get(input.network, "is_hosting", false),
			object.get(input.network, "is_proxy", false),
			object.get(c.hosting_asns, asn, null) != null,
			object.get(c.proxy_asns, asn, null) != null,
		},
		"new_account": [is_number(age), age < c.new_account_days] == [true, true],
		# A launch surge: this subject moved most of its traffic to a model released within the
		# launch window (signals.model_shift), and, multi-account, many subjects of its
		# behavioural cluster moved with it.
		"launch_shift": [launch_fresh, object.get(input.signals, ["model_shift", "moved"], false)] == [true, true],
		"launch_surge": [launch_fresh, object.get(input.signals, ["model_shift", "cluster_moved"], 0) >= object.get(data.gatekeeper.config.launch, ["shift", "min_cluster_subjects"], 1e12)] == [true, true],
	}
	present == true
}

# An indicator without a confidence counts; one with a confidence counts from `min_confidence`.
intel_confident(i, c) if not is_number(object.get(i, "confidence", null))

intel_confident(i, c) if i.confidence >= object.get(c, ["intel", "min_confidence"], 0)

# The weights are looked up once, not once per piece of evidence.
score := sum([object.get(weights, e, 0) | weights := data.gatekeeper.config.distillation.weights; some e in evidence])

# Pieces of evidence that only many accounts together can show (config `multi_account`). A level
# needs at least `min_multi_account[level]` of them, so no single account's own pattern, however
# heavy, is graded above what that allows (none by default: degraded or refused only with
# evidence that spans accounts).
multi_account := count({e | some e in object.get(data.gatekeeper.config.distillation, "multi_account", [])} & evidence)

enough_multi_account(lvl) if {
	multi_account >= object.get(data.gatekeeper.config.distillation, ["min_multi_account", lvl], 0)
}

# --- grading -------------------------------------------------------------------------------

default level := "none"

level := graded if {
	input.signals.available == true
	data.gatekeeper.config.distillation.enabled == true
	not exempt
}

# Accounts reviewed and cleared (a flag from the subject store, e.g. an evaluation harness).
exempt if {
	some flag in input.subject.flags
	flag in data.gatekeeper.config.distillation.exempt_flags
}

graded := "strong" if {
	c := data.gatekeeper.config.distillation
	score >= c.levels.strong

	# Every piece of evidence in `strong_requires` is there. Written as a set difference, not
	# `every`: regorus's compiled evaluator lets an `every` pass when its body is undefined, so
	# gatekeeper evaluates a policy that uses `every` with the slower interpreter (gatekeeper/policy/vm.py).
	count({r | some r in c.strong_requires} - evidence) == 0
	enough_multi_account("strong")
} else := "suspect" if {
	score >= data.gatekeeper.config.distillation.levels.suspect
	enough_multi_account("suspect")
} else := "watch" if {
	score >= data.gatekeeper.config.distillation.levels.watch
	enough_multi_account("watch")
} else := "none"

# Strong evidence is refused, unless the account is verified at `exempt_min_kyc` or above.
refuse if {
	level == "strong"
	data.gatekeeper.config.distillation.responses.strong.refuse == true
	not data.gatekeeper.config.kyc.levels[input.subject.kyc_level] >= data.gatekeeper.config.kyc.levels[data.gatekeeper.config.distillation.responses.strong.exempt_min_kyc]
}

# The response applied: the level's, or the suspect one for strong evidence not refused.
response := "suspect" if {
	level == "strong"
	not refuse
} else := level

step_up_level := data.gatekeeper.config.distillation.responses[response].step_up_kyc

step_up if {
	level != "none"
	not refuse
	data.gatekeeper.config.kyc.levels[input.subject.kyc_level] < data.gatekeeper.config.kyc.levels[step_up_level]
}

# Without evidence (the common case) there is nothing to refuse, and the refusal bodies are not
# evaluated.
refusals := set() if {
	level == "none"
} else := found

found contains {
	"priority": 40,
	"status": 403,
	"code": "distillation_suspected",
	"message": "request refused: the account's traffic matches a model-extraction campaign; contact support to review it",
} if {
	level == "strong"
	refuse
}

found contains {
	"priority": 35,
	"status": 403,
	"code": "kyc_step_up_required",
	"message": sprintf("KYC level %s or higher is required for this traffic; this account is verified at %s", [step_up_level, input.subject.kyc_level]),
} if {
	level != "none"
	step_up
}

# --- obligations (logged with the decision) --------------------------------------------------

default obligations := {}

obligations := object.union(
	{
		"flag_for_review": object.get(data.gatekeeper.config.distillation.responses[level], "flag_for_review", false) == true,
		"notes": [sprintf("distillation:%s", [level]), sprintf("evidence:%s", [concat("+", evidence)])],
	},
	step_up_obligation,
) if level != "none"

step_up_obligation := {"step_up_kyc": step_up_level} if step_up

else := {}

# --- reasoning and quotas ------------------------------------------------------------------

# The tightest reasoning cap of the level's response and the launch window; reasoning.rego
# applies it where it is tighter than the tier's exposure.
# With one cap (the usual case: no launch window) no comparison is needed.
reasoning_cap := c if {
	engaged
	count(caps) == 1
	some c in caps
} else := [c | some c in caps; count([x | some x in caps; tighter(x, c)]) == 0][0] if engaged

# tighter(a, b): exposure `a` shows less reasoning than `b`: a lower mode (config mode_rank),
# or the same mode with a smaller token budget.
tighter(a, b) if {
	data.gatekeeper.config.distillation.mode_rank[a.mode] < data.gatekeeper.config.distillation.mode_rank[b.mode]
}

tighter(a, b) if {
	a.mode == b.mode
	object.get(a, "max_tokens", 1e18) < object.get(b, "max_tokens", 1e18)
}

caps contains data.gatekeeper.config.distillation.responses[response].reasoning if {
	level != "none"
	not watch_exempt
}

# At the watch level, accounts verified at `responses.watch.exempt_min_kyc` or above keep their
# reasoning: a company's team behind one office address, using one internal tool, looks like a
# small linked cluster sending a template, and business verification is what a campaign of
# throw-away accounts cannot buy in bulk. The evidence is still noted in the decision and the
# watch quotas still apply; suspect and strong evidence shape their reasoning as for anyone.
watch_exempt if {
	level == "watch"
	kyc := data.gatekeeper.config.kyc.levels
	kyc[input.subject.kyc_level] >= kyc[data.gatekeeper.config.distillation.responses.watch.exempt_min_kyc]
}

caps contains data.gatekeeper.config.launch.reasoning if launch_applies

# One rule with `else`, not two bodies: regorus evaluates every body of a multi-body rule.
# The launch window is looked for only when the model has a release date (rarely).
engaged if {
	level != "none"
} else := true if {
	data.gatekeeper.config.launch.releases[input.request.model]
	launch_applies
}

default quotas := []

quotas := array.concat(signal_quotas, launch_quotas) if engaged

# Quota templates (scope "cluster" or "subject"): gatekeeper fills in key and cost, as for
# the tiers' (quotas.rego).
signal_quotas := data.gatekeeper.config.distillation.quotas[response] if level != "none"
else := []

# --- launch window -------------------------------------------------------------------------

# A model released less than launch.window_days ago (false for any other, and for requests
# that name no released model).
default launch_fresh := false

launch_fresh if {
	released := time.parse_rfc3339_ns(data.gatekeeper.config.launch.releases[input.request.model])
	input.time.unix_ns >= released
	input.time.unix_ns < released + ((data.gatekeeper.config.launch.window_days * 86400) * 1000000000)
}

# The launch caps apply to a fresh model's traffic when the shift says the subject is moving
# to it, not for the date alone: a new or weakly verified account whose recent traffic is
# mostly on it (one that tries it a little is left alone), or any account that moved to it
# together with `shift.min_cluster_subjects` subjects of its behavioural cluster.
launch_applies if {
	launch_fresh
	launch_moving
}

launch_moving if {
	launch_weak_account
	launch_mostly_new
} else if {
	object.get(input.signals, ["model_shift", "moved"], false) == true
	object.get(input.signals, ["model_shift", "cluster_moved"], 0) >= object.get(data.gatekeeper.config.launch, ["shift", "min_cluster_subjects"], 1e12)
}

# Without signals (the stage did not run), the date alone decides, as before the shift.
launch_mostly_new if {
	object.get(input.signals, "available", false) != true
} else if {
	object.get(input.signals, ["model_shift", "recent_share"], 1) >= object.get(data.gatekeeper.config.launch, ["shift", "weak_min_share"], 0)
}

launch_weak_account if {
	data.gatekeeper.config.kyc.levels[input.subject.kyc_level] < data.gatekeeper.config.kyc.levels[data.gatekeeper.config.launch.verified_kyc]
}

launch_weak_account if {
	is_number(input.subject.account_age_days)
	input.subject.account_age_days < data.gatekeeper.config.launch.new_account_days
}

launch_quotas := data.gatekeeper.config.launch.quotas if launch_applies
else := []

# Members of the subject's behavioural cluster in the configured age band (young accounts).
behaviour_young := object.get(input.signals, ["behaviour", "subjects_by_age", object.get(data.gatekeeper.config.distillation, ["behaviour", "age_band"], "30")], 0)
