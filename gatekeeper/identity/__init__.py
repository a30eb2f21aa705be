"""Who is calling: API-key extraction and subject stores (file or Redis)."""

from gatekeeper.identity.credentials import api_key_from_headers
from gatekeeper.identity.stores import (
    FileSubjectStore,
    RedisSubjectStore,
    SubjectRecord,
    SubjectStore,
    hash_api_key,
)

__all__ = [
    "FileSubjectStore",
    "RedisSubjectStore",
    "SubjectRecord",
    "SubjectStore",
    "api_key_from_headers",
    "hash_api_key",
]
