"""The demo: a deterministic model server ("demo-reasoner") protected by gatekeeper.

``gatekeeper.offline.demo.app`` builds the protected demo; ``gatekeeper.offline.demo.model_server``
is the model server alone (``python -m gatekeeper.offline.demo.model_server``). Nothing is
imported eagerly here, so running either module does not import it twice.
"""
