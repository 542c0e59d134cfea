"""Security core: bearer tokens, SMART scopes, the access policy and the audit chain.

A pure library (no HTTP, no database); ``docs/security.md`` describes the model and how the
server and the engine use it.
"""

from .audit_chain import (
    AccessRecord,
    AuditChain,
    ChainedRecord,
    Problem,
    ProblemKind,
    build_audit_event,
    verify_chain,
)
from .keys import (
    JwksCache,
    KeyLoadError,
    KeysUnavailable,
    generate_signing_key,
    load_private_key,
    public_jwks,
)
from .policy import (
    AccessRequest,
    BreakGlass,
    CompartmentKind,
    Decision,
    Filters,
    Group,
    Relationship,
    decide,
)
from .scopes import Interaction, Scope, ScopeSet, allows, parse_scopes
from .tokens import (
    InvalidToken,
    IssuerConfig,
    Principal,
    Role,
    TokenIssuer,
    TokenVerifier,
    www_authenticate,
)

__all__ = [
    "AccessRecord",
    "AccessRequest",
    "AuditChain",
    "BreakGlass",
    "ChainedRecord",
    "CompartmentKind",
    "Decision",
    "Filters",
    "Group",
    "Interaction",
    "InvalidToken",
    "IssuerConfig",
    "JwksCache",
    "KeyLoadError",
    "KeysUnavailable",
    "Principal",
    "Problem",
    "ProblemKind",
    "Relationship",
    "Role",
    "Scope",
    "ScopeSet",
    "TokenIssuer",
    "TokenVerifier",
    "allows",
    "build_audit_event",
    "decide",
    "generate_signing_key",
    "load_private_key",
    "parse_scopes",
    "public_jwks",
    "verify_chain",
    "www_authenticate",
]
