"""The demo: a deterministic model server ("demo-reasoner") protected by gatekeeper.

``gatekeeper.demo.app`` builds the protected demo; ``gatekeeper.demo.model_server`` is the model
server alone (``python -m gatekeeper.demo.model_server``). Nothing is imported eagerly here, so
running either module does not import it twice.
"""
