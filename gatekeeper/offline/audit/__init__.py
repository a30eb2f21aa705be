"""Reading the decision log after the fact: verify, query, stats, report (``gatekeeper audit``).

The log itself (events, masking, chain, writer, sinks) is written by ``gatekeeper.audit``.
"""
