package gatekeeper.reasoning_test

import data.gatekeeper.decision
import data.gatekeeper.decision_test_helpers as h

test_full_for_enterprise_with_business_kyc if {
	d := decision with input as h.subject("enterprise", "business")
	d.reasoning == {"mode": "full"}
}

test_enterprise_below_business_kyc_gets_nothing if {
	d := decision with input as h.subject("enterprise", "government_id")
	d.reasoning.mode == "drop"
}

test_summary_for_pro_with_government_id if {
	d := decision with input as h.subject("pro", "government_id")
	d.reasoning.mode == "summary"
}

test_pro_below_government_id_gets_nothing if {
	d := decision with input as h.subject("pro", "payment")
	d.reasoning.mode == "drop"
}

test_free_gets_nothing if {
	d := decision with input as h.subject("free", "business")
	d.reasoning.mode == "drop"
}
