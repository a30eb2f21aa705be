package gatekeeper.decision_test

import data.gatekeeper.decision

request(tier, level) := {
	"subject": {"id": "s1", "tier": tier, "kyc_level": level},
	"request": {"dialect": "openai_chat", "estimated_tokens": 100},
	"signals": {"available": true, "cot_elicitation": 1},
}

test_everything_is_allowed_with_per_key_limits if {
	d := decision with input as request("free", "none")
	d.allow
	{q.key | some q in d.quotas} == {"subject:s1:requests", "subject:s1:tokens"}
}

mode(tier, level) := m if {
	d := decision with input as request(tier, level)
	m := d.reasoning.mode
}

test_tier_exposure if {
	mode("enterprise", "business") == "full"
	mode("pro", "government_id") == "summary"
	mode("pro", "payment") == "drop"
	mode("free", "business") == "drop"
}
