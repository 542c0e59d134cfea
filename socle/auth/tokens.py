"""Bearer access tokens: verification (resource server) and issuance (built-in AS, tests).

:class:`TokenVerifier` checks a JWS-signed JWT against the configured trusted issuers:

1. compact JWS only (5-part JWE and RFC 7797 unencoded payloads are refused), size-bounded;
2. ``alg`` must be one the issuer accepts (RS256/ES256/PS256); ``none`` and ``HS*`` are refused
   before any key is looked at (no algorithm-confusion with a public key used as HMAC secret);
3. ``iss`` (read before verifying only to choose the keys) must be a configured issuer;
4. the key is the issuer's JWKS key with the token's ``kid`` (one refetch on an unknown ``kid``:
   rotation); a token without ``kid`` is refused unless the issuer allows it and publishes one key;
   the key type must match ``alg``;
5. signature verified by ``joserfc``;
6. claims: ``iss`` equal to the issuer, ``aud`` containing our audience, ``exp`` in the future,
   ``nbf``/``iat`` not in the future (``leeway`` seconds of clock skew each way), the issuer's
   required claims present, ``acr`` if the issuer requires one (PSC: ``eidas1``).

It returns a :class:`Principal`, or raises :class:`InvalidToken` whose ``reason`` comes from a
fixed vocabulary (never the token's own content), safe for
``WWW-Authenticate: Bearer error="invalid_token", error_description="<reason>"`` (see
:func:`www_authenticate`). :class:`~socle.auth.keys.KeysUnavailable` means the issuer's keys could
not be fetched at all: answer 503, not 401.

Roles: an issuer of profile ``"psc"`` (Pro Santé Connect, or an AS brokering it) yields
professionals identified by ``SubjectNameID`` (idNat_PS: ``8`` + RPPS, or ``0`` + ADELI); the
built-in AS (profile ``"smart"``) states the role in the ``socle_role`` claim; failing that, the
role is inferred from ``fhirUser`` (Patient → patient, RelatedPerson → representative,
Practitioner/PractitionerRole → professional) or, for a token with only ``system/`` scopes and no
user, system client. A token whose role cannot be determined is refused.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from joserfc import jws
from joserfc.errors import (
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key
from joserfc.jwt import JWTClaimsRegistry

from ..fhir.access import Role
from .keys import (
    ASYMMETRIC_ALGORITHMS,
    JwksCache,
    JwksSource,
    key_matches_alg,
)
from .scopes import ScopeSet, parse_scopes

MAX_TOKEN_BYTES = 16 * 1024
ACCEPTED_TYP = frozenset({"jwt", "at+jwt", "application/at+jwt", "application/jwt"})
ROLE_CLAIM = "socle_role"


class InvalidToken(Exception):
    """A token that must be answered with 401. ``reason`` is safe to send to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# The reasons, a fixed vocabulary (tests and the 401 answers rely on them).
R_MISSING = "missing bearer token"
R_MALFORMED = "malformed token"
R_TOO_LARGE = "token too large"
R_ENCRYPTED = "encrypted tokens are not accepted"
R_ALG_NONE = "unsigned tokens (alg none) are not accepted"
R_ALG_SYMMETRIC = "symmetric algorithms are not accepted"
R_ALG_UNSUPPORTED = "signature algorithm not accepted"
R_TYP = "token type not accepted"
R_ISSUER = "untrusted issuer"
R_NO_KID = "token has no key id (kid)"
R_UNKNOWN_KID = "unknown signing key"
R_KEY_ALG = "signing key does not match the algorithm"
R_SIGNATURE = "invalid signature"
R_EXPIRED = "token expired"
R_NOT_YET_VALID = "token not yet valid"
R_FUTURE_IAT = "token issued in the future"
R_AUDIENCE = "wrong audience"
R_ACR = "insufficient authentication level"
R_ROLE = "no role can be determined for this token"
R_NATIONAL_ID = "missing professional national identifier"


def _missing(names: Iterable[str]) -> str:
    return "missing claim: " + ", ".join(sorted(names))


@dataclass(frozen=True)
class IssuerConfig:
    """A trusted issuer.

    ``jwks``: a static JWKS dict or a callable returning one (e.g.
    :func:`~socle.auth.keys.http_jwks_fetcher`). ``profile``: ``"smart"`` (built-in AS, SMART
    claims) or ``"psc"`` (Pro Santé Connect-like: ``SubjectNameID`` → national id, role
    professional). ``granted_scopes``: scopes added to every token of this issuer — PSC grants no
    SMART scopes (``openid scope_all``), so an issuer accepted directly needs e.g.
    ``"user/*.cruds"`` here, the policy then doing the fine-grained work; empty means only the
    token's own scopes (deny by default). ``acr_values``: accepted ``acr`` values, compared
    case-insensitively (PSC: ``("eidas1",)``); None: not checked.
    """

    issuer: str
    jwks: JwksSource
    algorithms: frozenset[str] = frozenset({"RS256", "ES256", "PS256"})
    profile: Literal["smart", "psc"] = "smart"
    required_claims: tuple[str, ...] = ("iss", "sub", "exp", "aud")
    acr_values: tuple[str, ...] | None = None
    granted_scopes: str = ""
    require_kid: bool = True
    jwks_ttl: float = 300.0
    jwks_min_refetch: float = 5.0

    def __post_init__(self) -> None:
        bad = set(self.algorithms) - ASYMMETRIC_ALGORITHMS
        if bad:
            raise ValueError(f"issuer {self.issuer}: only asymmetric algorithms, not {sorted(bad)}")


@dataclass(frozen=True)
class Principal:
    """Who is calling, as established by a verified token.

    ``patient``: the patient id in context (SMART launch context ``patient`` claim, or the id of a
    ``Patient`` fhirUser); for a representative, the represented patient. ``organization``: the
    organisation the principal acts for (claim ``organization``; PSC ``SubjectOrganizationID``).
    ``national_id``: idNat_PS (``8`` + RPPS) from ``SubjectNameID``.
    """

    subject: str
    issuer: str
    role: Role
    scopes: ScopeSet = field(default_factory=ScopeSet)
    client_id: str | None = None
    fhir_user: str | None = None
    patient: str | None = None
    organization: str | None = None
    national_id: str | None = None
    sector: str | None = None  # "health" | "social" | "medico-social" (MASQUE_PSOCIAL)
    token_id: str | None = None
    # the authorisation grant (refresh-token family) an access token of ours came from: revoking
    # the grant revokes its access tokens too (RFC 7009 §2.1)
    grant_id: str | None = None
    expires_at: int | None = None
    auth_time: int | None = None
    acr: str | None = None

    @property
    def rpps(self) -> str | None:
        """The RPPS number if the national id is ``8`` + RPPS (11 digits)."""
        nid = self.national_id
        if nid and len(nid) == 12 and nid.startswith("8") and nid.isdigit():
            return nid[1:]
        return None

    @property
    def reference(self) -> str:
        """A stable reference for audit: fhirUser, else ``issuer#subject``."""
        return self.fhir_user or f"{self.issuer}#{self.subject}"


def _fhir_user_type(fhir_user: str | None) -> tuple[str | None, str | None]:
    """(resource type, id) of a fhirUser reference (relative or absolute URL)."""
    if not fhir_user:
        return None, None
    parts = fhir_user.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    return None, None


def _str_claim(claims: Mapping[str, Any], name: str) -> str | None:
    v = claims.get(name)
    return v if isinstance(v, str) and v else None


def _role_of(claims: Mapping[str, Any], scopes: ScopeSet, profile: str) -> Role:
    if profile == "psc":
        return Role.PROFESSIONAL
    explicit = claims.get(ROLE_CLAIM)
    if isinstance(explicit, str):
        try:
            return Role(explicit)
        except ValueError:
            raise InvalidToken(R_ROLE) from None
    rtype, _ = _fhir_user_type(_str_claim(claims, "fhirUser"))
    if rtype == "Patient":
        return Role.PATIENT
    if rtype == "RelatedPerson":
        return Role.REPRESENTATIVE
    if rtype in ("Practitioner", "PractitionerRole"):
        return Role.PROFESSIONAL
    if rtype is None and scopes.scopes and scopes.contexts == {"system"}:
        return Role.SYSTEM
    raise InvalidToken(R_ROLE)


class TokenVerifier:
    """Verifies bearer JWTs against trusted issuers; see the module docstring."""

    def __init__(
        self,
        issuers: Iterable[IssuerConfig],
        audience: str | Collection[str],
        leeway: int = 30,
        clock: Callable[[], float] = time.time,
        jwks_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuers = {cfg.issuer: cfg for cfg in issuers}
        self._audiences = [audience] if isinstance(audience, str) else list(audience)
        if not self._audiences:
            raise ValueError("at least one audience is needed")
        self._leeway = leeway
        self._clock = clock
        self._caches = {
            cfg.issuer: JwksCache(
                cfg.jwks,
                ttl=cfg.jwks_ttl,
                min_refetch_interval=cfg.jwks_min_refetch,
                clock=jwks_clock,
            )
            for cfg in self._issuers.values()
        }

    def jwks_cache(self, issuer: str) -> JwksCache:
        return self._caches[issuer]

    # -- steps -------------------------------------------------------------------------------

    def _extract(self, token: str) -> jws.CompactSignature:
        if not isinstance(token, str) or not token:
            raise InvalidToken(R_MISSING)
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken(R_TOO_LARGE)
        dots = token.count(".")
        if dots == 4:
            raise InvalidToken(R_ENCRYPTED)
        if dots != 2:
            raise InvalidToken(R_MALFORMED)
        try:
            obj = jws.extract_compact(token.encode("ascii"))
        except (JoseError, ValueError, TypeError, UnicodeError):
            raise InvalidToken(R_MALFORMED) from None
        header = obj.headers()
        if not isinstance(header, dict) or "b64" in header:
            raise InvalidToken(R_MALFORMED)
        return obj

    @staticmethod
    def _check_alg(header: Mapping[str, Any], cfg: IssuerConfig | None) -> str:
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise InvalidToken(R_MALFORMED)
        if alg.lower() == "none":
            raise InvalidToken(R_ALG_NONE)
        if alg.upper().startswith("HS"):
            raise InvalidToken(R_ALG_SYMMETRIC)
        allowed = cfg.algorithms if cfg is not None else ASYMMETRIC_ALGORITHMS
        if alg not in allowed:
            raise InvalidToken(R_ALG_UNSUPPORTED)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYP):
            raise InvalidToken(R_TYP)
        return alg

    @staticmethod
    def _unverified_claims(obj: jws.CompactSignature) -> dict[str, Any]:
        try:
            claims = json.loads(obj.payload)
        except (ValueError, TypeError):
            raise InvalidToken(R_MALFORMED) from None
        if not isinstance(claims, dict):
            raise InvalidToken(R_MALFORMED)
        return claims

    def _key(self, cfg: IssuerConfig, header: Mapping[str, Any], alg: str) -> Key:
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken(R_MALFORMED)
        cache = self._caches[cfg.issuer]
        if kid is None:
            if cfg.require_kid:
                raise InvalidToken(R_NO_KID)
            candidates = [k for k in cache.lookup(None) if key_matches_alg(k, alg)]
            if len(candidates) != 1:  # several keys (rotation in progress): ambiguous
                raise InvalidToken(R_NO_KID)
            return candidates[0]
        found = cache.lookup(kid)
        if not found:
            raise InvalidToken(R_UNKNOWN_KID)
        for key in found:
            if key_matches_alg(key, alg):
                return key
        raise InvalidToken(R_KEY_ALG)

    def _check_claims(self, cfg: IssuerConfig, claims: dict[str, Any]) -> None:
        missing = [c for c in cfg.required_claims if claims.get(c) in (None, "", [])]
        if missing:
            raise InvalidToken(_missing(missing))
        registry = JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=self._leeway,
            iss={"essential": True, "value": cfg.issuer},
            aud={"essential": True, "values": list(self._audiences)},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise InvalidToken(R_EXPIRED) from None
        except MissingClaimError as exc:
            known = {"iss", "aud", "exp", "nbf", "iat", "sub"}
            names = [n for n in exc.claim.split(",") if n in known]
            raise InvalidToken(_missing(names) if names else R_MALFORMED) from None
        except InvalidClaimError as exc:
            reason = {
                "nbf": R_NOT_YET_VALID,
                "iat": R_FUTURE_IAT,
                "aud": R_AUDIENCE,
                "iss": R_ISSUER,
            }.get(exc.claim, R_MALFORMED)
            raise InvalidToken(reason) from None
        if "exp" not in claims:  # exp is mandatory even if an issuer config forgot it
            raise InvalidToken(_missing(["exp"]))
        if cfg.acr_values is not None:
            acr = claims.get("acr")
            if not isinstance(acr, str) or acr.lower() not in {a.lower() for a in cfg.acr_values}:
                raise InvalidToken(R_ACR)

    def _principal(self, cfg: IssuerConfig, claims: Mapping[str, Any]) -> Principal:
        scope_claim = claims.get("scope", claims.get("scp"))
        raw: list[str] = []
        if isinstance(scope_claim, str):
            raw = scope_claim.split()
        elif isinstance(scope_claim, list):
            raw = [s for s in scope_claim if isinstance(s, str)]
        raw += cfg.granted_scopes.split()
        scopes = parse_scopes(raw)
        role = _role_of(claims, scopes, cfg.profile)
        fhir_user = _str_claim(claims, "fhirUser")
        patient = _str_claim(claims, "patient")
        rtype, rid = _fhir_user_type(fhir_user)
        if patient is None and rtype == "Patient":
            patient = rid
        national_id = _str_claim(claims, "SubjectNameID") or _str_claim(claims, "idnat")
        if cfg.profile == "psc" and not national_id:
            raise InvalidToken(R_NATIONAL_ID)
        organization = _str_claim(claims, "organization")
        if organization is None and cfg.profile == "psc":
            organization = _str_claim(claims, "SubjectOrganizationID")
        exp = claims.get("exp")
        auth_time = claims.get("auth_time")
        return Principal(
            subject=str(claims.get("sub", "")),
            issuer=cfg.issuer,
            role=role,
            scopes=scopes,
            client_id=_str_claim(claims, "client_id") or _str_claim(claims, "azp"),
            fhir_user=fhir_user,
            patient=patient,
            organization=organization,
            national_id=national_id,
            sector=_str_claim(claims, "sector"),
            token_id=_str_claim(claims, "jti"),
            grant_id=_str_claim(claims, "socle_grant"),
            expires_at=int(exp) if isinstance(exp, int | float) else None,
            auth_time=int(auth_time) if isinstance(auth_time, int | float) else None,
            acr=_str_claim(claims, "acr"),
        )

    # -- API ---------------------------------------------------------------------------------

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`InvalidToken` otherwise."""
        obj = self._extract(token)
        header = obj.headers()
        self._check_alg(header, None)  # none/HS* refused before even reading the payload
        claims = self._unverified_claims(obj)
        iss = claims.get("iss")
        cfg = self._issuers.get(iss) if isinstance(iss, str) else None
        if cfg is None:
            raise InvalidToken(R_ISSUER)
        alg = self._check_alg(header, cfg)
        key = self._key(cfg, header, alg)
        try:
            ok = jws.validate_compact(obj, key, algorithms=[alg])
        except JoseError:
            ok = False
        if not ok:
            raise InvalidToken(R_SIGNATURE)
        self._check_claims(cfg, claims)
        return self._principal(cfg, claims)

    def principal_of(self, claims: Mapping[str, Any]) -> Principal:
        """The principal a verified token with these claims would give: for a page session, which
        holds the claims the same login would have put in an access token (its ``iss`` must be a
        trusted issuer's)."""
        iss = claims.get("iss")
        cfg = self._issuers.get(iss) if isinstance(iss, str) else None
        if cfg is None:
            raise InvalidToken(R_ISSUER)
        return self._principal(cfg, claims)

    def verify_authorization(self, header_value: str | None) -> Principal:
        """Verify an ``Authorization`` header value (``Bearer <token>``)."""
        return self.verify(bearer_token(header_value))


def bearer_token(header_value: str | None) -> str:
    """The token of an ``Authorization: Bearer …`` header; :class:`InvalidToken` if absent."""
    if not header_value:
        raise InvalidToken(R_MISSING)
    scheme, _, token = header_value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken(R_MISSING)
    return token.strip()


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def www_authenticate(
    error: InvalidToken | str | None = None,
    realm: str = "socle",
    scope: str | None = None,
) -> str:
    """The ``WWW-Authenticate`` value of a 401 (or, with ``error="insufficient_scope"``, 403).

    No token at all → no error code (RFC 6750 §3.1); a bad token → ``invalid_token`` with its
    reason as ``error_description``.
    """
    parts = [f'realm="{_quote(realm)}"']
    if isinstance(error, InvalidToken):
        if error.reason != R_MISSING:
            parts.append('error="invalid_token"')
            parts.append(f'error_description="{_quote(error.reason)}"')
    elif error:
        parts.append(f'error="{_quote(error)}"')
    if scope:
        parts.append(f'scope="{_quote(scope)}"')
    return "Bearer " + ", ".join(parts)


class TokenIssuer:
    """Signs access tokens with a private JWK (built-in authorisation server, tests)."""

    def __init__(
        self,
        issuer: str,
        key: Key,
        alg: str | None = None,
        lifetime: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not key.is_private:
            raise ValueError("a private key is needed to sign")
        self.issuer = issuer
        self.key = key
        self.alg = alg or (key.alg or ("ES256" if key.key_type == "EC" else "RS256"))
        if self.alg not in ASYMMETRIC_ALGORITHMS or not key_matches_alg(key, self.alg):
            raise ValueError(f"key cannot sign {self.alg}")
        key.ensure_kid()
        self.lifetime = lifetime
        self._clock = clock

    def issue(
        self,
        subject: str,
        audience: str | list[str],
        scope: str = "",
        lifetime: int | None = None,
        typ: str = "at+jwt",
        **claims: Any,
    ) -> str:
        """A signed token; ``claims`` may add or override any claim (``None`` values dropped)."""
        now = int(self._clock())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + (self.lifetime if lifetime is None else lifetime),
            "jti": secrets.token_urlsafe(16),
        }
        if scope:
            body["scope"] = scope
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        header = {"alg": self.alg, "kid": self.key.kid, "typ": typ}
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        return jws.serialize_compact(header, payload, self.key, algorithms=[self.alg])
