# KYC strength: what a subject may do depends on how strongly it was verified.
package gatekeeper.kyc

import data.gatekeeper.config.kyc as cfg

# at_least(level) holds when the subject is verified at `level` or stronger.
at_least(level) if cfg.levels[input.subject.kyc_level] >= cfg.levels[level]

required_level := cfg.minimum

refusals contains {
	"priority": 30,
	"status": 403,
	"code": "kyc_insufficient",
	"message": sprintf("KYC level %s or higher is required; this account is verified at %s", [cfg.minimum, input.subject.kyc_level]),
} if {
	# Inlined at_least(cfg.minimum): a comparison is cheaper than a function call.
	not cfg.levels[input.subject.kyc_level] >= cfg.levels[cfg.minimum]
}
