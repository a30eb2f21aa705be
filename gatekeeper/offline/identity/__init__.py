"""Managing subjects in the file and Redis stores (``gatekeeper subjects …``)."""
