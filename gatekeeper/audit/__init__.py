"""The decision log: events, masking, hash chain and checkpoints, sinks.

Reading it afterwards (verify, query, stats, report) is offline: ``gatekeeper.offline.audit``.
"""

from gatekeeper.audit.canonical import GENESIS_HASH, canonical_json, entry_hash
from gatekeeper.audit.durable import DurableResponse
from gatekeeper.audit.events import DecisionRecord, new_decision_id, rfc3339_ns
from gatekeeper.audit.keys import Keyring, Signer
from gatekeeper.audit.log import DecisionLog, DecisionLogUnavailable
from gatekeeper.audit.masking import Masker, parse_rules
from gatekeeper.audit.remote import HttpUploadSink, RedisStreamSink, RemoteSink
from gatekeeper.audit.sinks import JsonlFileSink, Sink, StdoutSink
from gatekeeper.audit.witness import Witness, WitnessPublisher, open_witness

__all__ = [
    "GENESIS_HASH",
    "DecisionLog",
    "DecisionLogUnavailable",
    "DecisionRecord",
    "DurableResponse",
    "HttpUploadSink",
    "JsonlFileSink",
    "Keyring",
    "Masker",
    "RedisStreamSink",
    "RemoteSink",
    "Signer",
    "Sink",
    "StdoutSink",
    "Witness",
    "WitnessPublisher",
    "canonical_json",
    "entry_hash",
    "new_decision_id",
    "open_witness",
    "parse_rules",
    "rfc3339_ns",
]
