# Input builders shared by the pack's tests.
package gatekeeper.decision_test_helpers

subject(tier, level) := {
	"version": 1,
	"subject": {"id": "s1", "tier": tier, "kyc_level": level, "flags": [], "auth_method": "api_key"},
	"network": {"client_ip": "203.0.113.7", "country": "US", "jurisdiction_tags": []},
	"request": {"method": "POST", "path": "/v1/messages", "dialect": "anthropic_messages", "stream": true},
	"signals": {},
	"time": {"unix_ns": 0, "rfc3339": "2026-01-01T00:00:00Z", "weekday": 3, "hour_utc": 0},
}
