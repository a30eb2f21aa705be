# Fixture configuration for the pack's tests of logic: a copy of config/*/data.json as it was
# when the tests were written. Tests evaluate the rules `with data.gatekeeper.config as
# fixtures.config`, so that a team tuning the shipped data (a tier limit, a threshold, a country)
# edits only its data.json; shipped_data_test.rego holds the few tests of the shipped data
# itself. Change this fixture only to test new logic.
package gatekeeper.test_fixtures

# `patched(p)`: the fixture with the objects of `p` merged in (arrays and scalars replaced).
patched(p) := object.union(config, p)

config := {
	"distillation": {
		"enabled": true,
		"window": "1h",
		"cot": {
			"elevated": 0.4,
			"high": 0.7,
		},
		"template": {
			"min_count": 5,
			"min_share": 0.3,
		},
		"reasoning_heavy": {
			"min_requests": 20,
			"min_share": 0.9,
		},
		"cluster": {
			"large": 8,
			"huge": 50,
			"heavy_requests": 2000,
		},
		"new_account_days": 30,
		"exempt_flags": [
			"distillation_exempt",
		],
		"hosting_asns": {
			"64500": "Example Cloud Hosting LLC",
			"64510": "Example Compute GmbH",
		},
		"proxy_asns": {
			"64511": "Example Residential Proxy Network",
		},
		"weights": {
			"cot_elevated": 1,
			"cot_high": 1,
			"templated": 2,
			"reasoning_heavy": 1,
			"cluster_large": 1,
			"cluster_huge": 1,
			"cluster_heavy": 1,
			"datacenter": 1,
			"new_account": 1,
		},
		"levels": {
			"watch": 3,
			"suspect": 5,
			"strong": 7,
		},
		"strong_requires": [
			"cot_high",
			"templated",
			"cluster_huge",
		],
		"responses": {
			"watch": {
				"reasoning": {
					"mode": "summary",
					"max_tokens": 32,
				},
				"flag_for_review": false,
			},
			"suspect": {
				"reasoning": {
					"mode": "drop",
				},
				"flag_for_review": true,
				"step_up_kyc": "government_id",
			},
			"strong": {
				"refuse": true,
				"reasoning": {
					"mode": "drop",
				},
				"flag_for_review": true,
				"exempt_min_kyc": "business",
			},
		},
		"quotas": {
			"watch": [
				{
					"name": "cluster_requests",
					"scope": "cluster",
					"unit": "requests",
					"capacity": 1200,
					"rate": 1200,
					"period": 3600,
					"on_store_error": "local",
				},
			],
			"suspect": [
				{
					"name": "cluster_requests",
					"scope": "cluster",
					"unit": "requests",
					"capacity": 120,
					"rate": 120,
					"period": 3600,
					"on_store_error": "local",
				},
				{
					"name": "distillation_requests",
					"scope": "subject",
					"unit": "requests",
					"capacity": 20,
					"rate": 20,
					"period": 3600,
					"on_store_error": "local",
				},
			],
			"strong": [
				{
					"name": "cluster_requests",
					"scope": "cluster",
					"unit": "requests",
					"capacity": 120,
					"rate": 120,
					"period": 3600,
					"on_store_error": "local",
				},
				{
					"name": "distillation_requests",
					"scope": "subject",
					"unit": "requests",
					"capacity": 20,
					"rate": 20,
					"period": 3600,
					"on_store_error": "local",
				},
			],
		},
		"mode_rank": {
			"full": 4,
			"truncate": 3,
			"summary": 2,
			"redact": 1,
			"drop": 0,
		},
	},
	"jurisdictions": {
		"restricted": [
			"CU",
			"IR",
			"KP",
			"SY",
		],
		"unknown_location_min_kyc": "government_id",
	},
	"kyc": {
		"levels": {
			"none": 0,
			"email": 1,
			"phone": 2,
			"payment": 3,
			"government_id": 4,
			"business": 5,
		},
		"minimum": "email",
	},
	"launch": {
		"window_days": 14,
		"new_account_days": 30,
		"verified_kyc": "government_id",
		"releases": {},
		"reasoning": {
			"mode": "summary",
			"max_tokens": 64,
		},
		"quotas": [
			{
				"name": "launch_requests",
				"unit": "requests",
				"capacity": 30,
				"rate": 30,
				"period": 3600,
				"on_store_error": "local",
			},
			{
				"name": "launch_tokens",
				"unit": "tokens",
				"capacity": 60000,
				"rate": 60000,
				"period": 3600,
				"on_store_error": "local",
			},
		],
	},
	"log": {
		"mask": [
			{
				"op": "hash",
				"path": "/input/subject/payment_fingerprint",
			},
		],
	},
	"reasoning": {
		"default": {
			"mode": "drop",
		},
		"by_tier": {
			"enterprise": {
				"min_kyc": "business",
				"exposure": {
					"mode": "full",
				},
			},
			"pro": {
				"min_kyc": "government_id",
				"exposure": {
					"mode": "summary",
					"max_tokens": 64,
				},
			},
			"research": {
				"min_kyc": "government_id",
				"exposure": {
					"mode": "truncate",
					"max_tokens": 128,
				},
			},
			"education": {
				"min_kyc": "phone",
				"exposure": {
					"mode": "redact",
				},
			},
		},
	},
	"shadow": {
		"codes": [],
	},
	"tiers": {
		"default_tier": "free",
		"tiers": {
			"free": {
				"quotas": [
					{
						"name": "requests",
						"unit": "requests",
						"capacity": 10,
						"rate": 10,
						"period": 60,
						"on_store_error": "local",
					},
					{
						"name": "tokens",
						"unit": "tokens",
						"capacity": 100000,
						"rate": 100000,
						"period": 60,
						"on_store_error": "local",
					},
					{
						"name": "tokens_month",
						"unit": "tokens",
						"kind": "window",
						"window": "month",
						"capacity": 1000000,
						"scope": "org",
						"on_store_error": "allow",
					},
				],
			},
			"pro": {
				"quotas": [
					{
						"name": "reasoning_tokens",
						"unit": "reasoning_tokens",
						"capacity": 200000,
						"rate": 200000,
						"period": 3600,
						"on_store_error": "deny",
					},
					{
						"name": "requests",
						"unit": "requests",
						"capacity": 60,
						"rate": 60,
						"period": 60,
						"on_store_error": "local",
					},
					{
						"name": "tokens",
						"unit": "tokens",
						"capacity": 400000,
						"rate": 400000,
						"period": 60,
						"on_store_error": "local",
					},
					{
						"name": "tokens_month",
						"unit": "tokens",
						"kind": "window",
						"window": "month",
						"capacity": 20000000,
						"scope": "org",
						"on_store_error": "allow",
					},
				],
			},
			"enterprise": {
				"quotas": [
					{
						"name": "reasoning_tokens",
						"unit": "reasoning_tokens",
						"capacity": 2000000,
						"rate": 2000000,
						"period": 3600,
						"on_store_error": "deny",
					},
					{
						"name": "requests",
						"unit": "requests",
						"capacity": 600,
						"rate": 600,
						"period": 60,
						"on_store_error": "local",
					},
					{
						"name": "tokens",
						"unit": "tokens",
						"capacity": 2000000,
						"rate": 2000000,
						"period": 60,
						"on_store_error": "local",
					},
					{
						"name": "tokens_month",
						"unit": "tokens",
						"kind": "window",
						"window": "month",
						"capacity": 200000000,
						"scope": "org",
						"on_store_error": "allow",
					},
				],
			},
		},
	},
}
