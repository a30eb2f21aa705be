"""Policy tooling no request runs: replaying a decision log against a policy (``policy replay``).

Checking, testing and conformance cases stay in ``gatekeeper.policy``: loading a policy runs
them at start-up and on every hot reload.
"""
