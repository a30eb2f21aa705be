package gatekeeper.quotas_test

import data.gatekeeper.decision
import data.gatekeeper.decision_test_helpers as h

test_free_tier_bucket if {
	d := decision with input as h.subject("free", "email")
	d.quotas == [{
		"name": "requests", "key": "subject:s1:requests", "kind": "token_bucket",
		"unit": "requests", "capacity": 10, "rate": 10, "period": 60, "cost": 1,
	}]
}

test_pro_tier_bucket if {
	d := decision with input as h.subject("pro", "government_id")
	d.quotas[0].capacity == 60
	d.quotas[0].rate == 60
}

test_enterprise_tier_bucket if {
	d := decision with input as h.subject("enterprise", "business")
	d.quotas[0].capacity == 600
	d.quotas[0].rate == 600
}

test_unknown_tier_gets_the_default_tier if {
	d := decision with input as h.subject("platinum", "email")
	d.quotas[0].capacity == 10
}

test_quota_key_is_per_subject if {
	doc := object.union(h.subject("free", "email"), {"subject": {"id": "other", "tier": "free", "kyc_level": "email"}})
	d := decision with input as doc
	d.quotas[0].key == "subject:other:requests"
}
