"""Who is calling: API keys (file or Redis stores), bearer JWTs, and the app's own resolver
hook, tried in the order ``identity.methods`` gives (``Identifier``)."""

from gatekeeper.identity.cache import CachedSubjectStore, SubjectCache
from gatekeeper.identity.credentials import api_key_from_headers
from gatekeeper.identity.identify import Identifier, ResolverHook, SubjectResolver, load_resolver
from gatekeeper.identity.jwt import JwksCache, JwtVerifier, looks_like_jwt, subject_from_claims
from gatekeeper.identity.stores import (
    FileSubjectStore,
    RedisSubjectStore,
    SubjectAttributes,
    SubjectRecord,
    SubjectStore,
    hash_api_key,
)

__all__ = [
    "CachedSubjectStore",
    "FileSubjectStore",
    "Identifier",
    "JwksCache",
    "JwtVerifier",
    "RedisSubjectStore",
    "ResolverHook",
    "SubjectAttributes",
    "SubjectCache",
    "SubjectRecord",
    "SubjectResolver",
    "SubjectStore",
    "api_key_from_headers",
    "hash_api_key",
    "load_resolver",
    "looks_like_jwt",
    "subject_from_claims",
]
