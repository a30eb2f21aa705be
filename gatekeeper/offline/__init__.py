"""Offline tooling: code no request runs, only the command line (``gatekeeper …``, ``cli/``).

Everything else under ``gatekeeper/`` is the request path: what the middleware runs per request,
and what it builds at start-up (policy loading and checking, the GeoIP database, the decision
log). Nothing there imports this package (``tests/architecture`` checks it); the sub-packages
here mirror the request-path packages they read the output of, or administer:

- ``offline/audit/``: ``gatekeeper audit verify | query | stats | report`` over the decision log
  (reading rotated files and worker chains, verifying hashes, signatures and checkpoints,
  filtering, statistics, the HTML report with its ``report.css`` and ``report.js``).
- ``offline/policy/replay.py``: ``gatekeeper policy replay``, a decision log against a policy.
- ``offline/identity/admin.py``: ``gatekeeper subjects …``, managing the subject stores.
- ``offline/simulate/``: ``gatekeeper simulate``, distillation scenarios against the signals.
- ``offline/intel.py``: ``gatekeeper intel import | export``, STIX 2.1 bundles in and out.
- ``offline/demo/``: ``gatekeeper demo`` and the demo model server (demo-reasoner).
"""
