"""Token verification: each bad token refused with its reason; JWKS caching and rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from joserfc import jws

from socle.auth import tokens as t
from socle.auth.keys import (
    JwksCache,
    KeyLoadError,
    KeysUnavailable,
    generate_signing_key,
    load_private_key,
    public_jwks,
)
from socle.auth.tokens import (
    InvalidToken,
    IssuerConfig,
    Role,
    TokenIssuer,
    TokenVerifier,
    bearer_token,
    www_authenticate,
)

ISS = "https://auth.socle.test"
PSC = "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet"
AUD = "https://socle.test/fhir"
NOW = 1_750_000_000


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def es_key():
    return generate_signing_key("ES256", kid="es-1")


@pytest.fixture(scope="module")
def rs_key():
    return generate_signing_key("RS256", kid="rs-1")


@pytest.fixture(scope="module")
def ps_key():
    return generate_signing_key("PS256", kid="ps-1")


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def setup(es_key, rs_key, ps_key, clock):
    jwks = public_jwks([es_key, rs_key, ps_key])
    verifier = TokenVerifier(
        [IssuerConfig(ISS, jwks)], audience=AUD, leeway=30, clock=clock, jwks_clock=clock
    )
    issuer = TokenIssuer(ISS, es_key, clock=clock)
    return verifier, issuer


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(**over: Any) -> dict[str, Any]:
    base = {
        "iss": ISS,
        "sub": "u1",
        "aud": AUD,
        "iat": NOW,
        "exp": NOW + 300,
        "scope": "user/*.rs",
        "fhirUser": "Practitioner/p1",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(key, body: dict[str, Any], alg: str = "ES256", **header: Any) -> str:
    h = {"alg": alg, "kid": key.kid, "typ": "at+jwt", **header}
    h = {k: v for k, v in h.items() if v is not None}
    return jws.serialize_compact(h, json.dumps(body), key, algorithms=[alg])


def reason(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as exc:
        verifier.verify(token)
    return exc.value.reason


# -- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256"])
def test_valid_token_accepted(setup, es_key, rs_key, ps_key, alg):
    verifier, _ = setup
    key = {"ES256": es_key, "RS256": rs_key, "PS256": ps_key}[alg]
    p = verifier.verify(sign(key, claims(client_id="app", organization="Organization/o1"), alg))
    assert p.subject == "u1" and p.issuer == ISS
    assert p.role == Role.PROFESSIONAL
    assert p.client_id == "app" and p.organization == "Organization/o1"
    assert [s.raw for s in p.scopes] == ["user/*.rs"]


def test_issuer_helper_and_patient_context(setup):
    verifier, issuer = setup
    tok = issuer.issue("pat-1", AUD, "patient/*.rs openid fhirUser", fhirUser="Patient/45")
    p = verifier.verify(tok)
    assert p.role == Role.PATIENT and p.patient == "45"
    assert p.scopes.has("openid") and p.token_id
    assert verifier.verify_authorization(f"Bearer {tok}").subject == "pat-1"


def test_system_client_role(setup):
    verifier, issuer = setup
    p = verifier.verify(issuer.issue("client-9", AUD, "system/Observation.crs", client_id="c9"))
    assert p.role == Role.SYSTEM and p.client_id == "c9"


def test_explicit_role_claim_and_audience_list(setup):
    verifier, issuer = setup
    tok = issuer.issue("a1", ["other", AUD], "user/*.rs", socle_role="ars-analyst")
    assert verifier.verify(tok).role == Role.ARS_ANALYST


def test_leeway_accepts_small_skew(setup, es_key, clock):
    verifier, _ = setup
    tok = sign(es_key, claims(iat=NOW + 20, nbf=NOW + 20, exp=NOW + 300))
    assert verifier.verify(tok)
    clock.now = NOW + 320  # expired 20 s ago, within the 30 s leeway
    assert verifier.verify(tok)


def test_psc_issuer_national_id(rs_key, clock):
    cfg = IssuerConfig(
        PSC, public_jwks(rs_key), profile="psc", acr_values=("eidas1",), granted_scopes="user/*.rs"
    )
    v = TokenVerifier([cfg], audience=AUD, clock=clock, jwks_clock=clock)
    body = claims(
        iss=PSC,
        scope="openid scope_all",
        fhirUser=None,
        SubjectNameID="810001234567",
        SubjectOrganizationID="1750000000",
        acr="EIDAS1",
    )
    p = v.verify(sign(rs_key, body, "RS256"))
    assert p.role == Role.PROFESSIONAL
    assert p.national_id == "810001234567" and p.rpps == "10001234567"
    assert p.organization == "1750000000"
    assert p.scopes.has("scope_all") and [s.raw for s in p.scopes] == ["user/*.rs"]
    assert reason(v, sign(rs_key, {**body, "acr": "eidas0"}, "RS256")) == t.R_ACR
    no_id = {k: v for k, v in body.items() if k != "SubjectNameID"}
    assert reason(v, sign(rs_key, no_id, "RS256")) == t.R_NATIONAL_ID


# -- refused ----------------------------------------------------------------------------------


def test_forged_signature(setup, es_key):
    verifier, _ = setup
    tok = sign(es_key, claims())
    h, p, s = tok.split(".")
    forged_payload = b64(claims(sub="admin", socle_role="admin"))
    assert reason(verifier, f"{h}.{forged_payload}.{s}") == t.R_SIGNATURE
    sig = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    sig[5] ^= 1
    assert reason(verifier, f"{h}.{p}.{b64(bytes(sig))}") == t.R_SIGNATURE


def test_wrong_key_same_kid(setup):
    verifier, _ = setup
    attacker = generate_signing_key("ES256", kid="es-1")  # claims to be our key
    assert reason(verifier, sign(attacker, claims())) == t.R_SIGNATURE


def test_unknown_key(setup):
    verifier, _ = setup
    other = generate_signing_key("ES256", kid="not-published")
    assert reason(verifier, sign(other, claims())) == t.R_UNKNOWN_KID


def test_key_of_another_type_for_kid(setup, rs_key):
    verifier, _ = setup
    # header says ES256 but names the RSA key: refused before any verification
    tok = sign(generate_signing_key("ES256", kid="rs-1"), claims())
    assert reason(verifier, tok) == t.R_KEY_ALG


def test_expired(setup, es_key, clock):
    verifier, _ = setup
    assert reason(verifier, sign(es_key, claims(exp=NOW - 31))) == t.R_EXPIRED
    tok = sign(es_key, claims())
    clock.now = NOW + 331
    assert reason(verifier, tok) == t.R_EXPIRED


def test_not_yet_valid(setup, es_key):
    verifier, _ = setup
    assert reason(verifier, sign(es_key, claims(nbf=NOW + 120))) == t.R_NOT_YET_VALID
    assert reason(verifier, sign(es_key, claims(iat=NOW + 120))) == t.R_FUTURE_IAT


def test_wrong_audience(setup, es_key):
    verifier, _ = setup
    assert reason(verifier, sign(es_key, claims(aud="https://elsewhere/fhir"))) == t.R_AUDIENCE
    assert reason(verifier, sign(es_key, claims(aud=["a", "b"]))) == t.R_AUDIENCE


def test_wrong_issuer(setup, es_key):
    verifier, _ = setup
    assert reason(verifier, sign(es_key, claims(iss="https://evil.test"))) == t.R_ISSUER
    assert reason(verifier, sign(es_key, claims(iss=None))) == t.R_ISSUER


def test_alg_none(setup):
    verifier, _ = setup
    tok = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    assert reason(verifier, tok) == t.R_ALG_NONE
    tok = f"{b64({'alg': 'None', 'kid': 'es-1'})}.{b64(claims())}.c2ln"
    assert reason(verifier, tok) == t.R_ALG_NONE


def test_hs256_with_public_key_as_secret(setup, rs_key):
    """The classic algorithm-confusion attack: HMAC keyed with the published public key."""
    verifier, _ = setup
    # joserfc itself refuses a PEM public key as an HMAC secret, so the attacker's token is
    # built by hand here
    secret = rs_key.as_pem(private=False)
    signing_input = f"{b64({'alg': 'HS256', 'kid': 'rs-1'})}.{b64(claims())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    tok = f"{signing_input}.{b64(mac)}"
    assert reason(verifier, tok) == t.R_ALG_SYMMETRIC


def test_unaccepted_algorithm(es_key, clock):
    cfg = IssuerConfig(ISS, public_jwks(es_key), algorithms=frozenset({"RS256"}))
    v = TokenVerifier([cfg], audience=AUD, clock=clock, jwks_clock=clock)
    assert reason(v, sign(es_key, claims())) == t.R_ALG_UNSUPPORTED
    with pytest.raises(ValueError):
        IssuerConfig(ISS, {}, algorithms=frozenset({"HS256"}))


def test_missing_claims_and_bad_typ(setup, es_key):
    verifier, _ = setup
    assert reason(verifier, sign(es_key, claims(exp=None))) == "missing claim: exp"
    assert reason(verifier, sign(es_key, claims(sub=None))) == "missing claim: sub"
    assert reason(verifier, sign(es_key, claims(), typ="dpop+jwt")) == t.R_TYP


def test_malformed(setup):
    verifier, _ = setup
    assert reason(verifier, "") == t.R_MISSING
    assert reason(verifier, "abc") == t.R_MALFORMED
    assert reason(verifier, "a.b.c") == t.R_MALFORMED
    assert reason(verifier, "a.b.c.d.e") == t.R_ENCRYPTED
    assert reason(verifier, "a." * 10000 + "b") in (t.R_TOO_LARGE, t.R_MALFORMED)
    tok = f"{b64({'alg': 'ES256', 'kid': 'es-1'})}.{b64(b'[1,2]')}.c2ln"
    assert reason(verifier, tok) == t.R_MALFORMED


def test_role_unknown_refused(setup):
    verifier, issuer = setup
    tok = issuer.issue("x", AUD, "user/*.rs", fhirUser=None)
    assert reason(verifier, tok) == t.R_ROLE
    assert reason(verifier, issuer.issue("x", AUD, "user/*.rs", socle_role="root")) == t.R_ROLE


def test_missing_kid_refused_with_rotation(es_key, clock):
    """Without a kid the key is ambiguous while two keys are published: refused."""
    new = generate_signing_key("ES256", kid="es-2")
    two = public_jwks([es_key, new])
    body = claims()
    tok = sign(new, body, kid=None)
    strict = TokenVerifier([IssuerConfig(ISS, two)], AUD, clock=clock, jwks_clock=clock)
    assert reason(strict, tok) == t.R_NO_KID
    lenient = IssuerConfig(ISS, two, require_kid=False)
    v = TokenVerifier([lenient], AUD, clock=clock, jwks_clock=clock)
    assert reason(v, tok) == t.R_NO_KID
    single = IssuerConfig(ISS, public_jwks(new), require_kid=False)
    v = TokenVerifier([single], AUD, clock=clock, jwks_clock=clock)
    assert v.verify(tok).subject == "u1"


def test_reasons_are_safe_header_values(setup, es_key):
    verifier, _ = setup
    tok = sign(es_key, claims(iss='evil"\r\nSet-Cookie: x'))
    with pytest.raises(InvalidToken) as exc:
        verifier.verify(tok)
    header = www_authenticate(exc.value)
    assert header == (
        'Bearer realm="socle", error="invalid_token", error_description="untrusted issuer"'
    )
    assert www_authenticate(InvalidToken(t.R_MISSING)) == 'Bearer realm="socle"'
    assert 'error="insufficient_scope"' in www_authenticate("insufficient_scope", scope="a b")
    with pytest.raises(InvalidToken):
        bearer_token("Basic abc")
    assert bearer_token("bearer  xyz ") == "xyz"


# -- JWKS cache and rotation ------------------------------------------------------------------


def test_rotation_refetches_once_on_unknown_kid(es_key, clock):
    published = {"jwks": public_jwks(es_key)}
    calls = []

    def fetch():
        calls.append(clock.now)
        return published["jwks"]

    cfg = IssuerConfig(ISS, fetch, jwks_ttl=300, jwks_min_refetch=5)
    v = TokenVerifier([cfg], AUD, clock=clock, jwks_clock=clock)
    issuer = TokenIssuer(ISS, es_key, clock=clock)
    assert v.verify(issuer.issue("u", AUD, "user/*.rs", fhirUser="Practitioner/1"))
    assert len(calls) == 1
    # the issuer rotates: publishes a new key and signs with it
    new = generate_signing_key("ES256", kid="es-rotated")
    published["jwks"] = public_jwks([es_key, new])
    clock.now += 10
    tok = TokenIssuer(ISS, new, clock=clock).issue("u", AUD, "user/*.rs", fhirUser="Practitioner/1")
    assert v.verify(tok).subject == "u"
    assert len(calls) == 2  # one refetch
    assert v.verify(tok) and len(calls) == 2  # now cached
    # an unknown kid refetches at most once per min interval (no hammering)
    stranger = generate_signing_key("ES256", kid="nope")
    for _ in range(5):
        assert reason(v, sign(stranger, claims())) == t.R_UNKNOWN_KID
    assert len(calls) == 2
    clock.now += 6
    assert reason(v, sign(stranger, claims(iat=int(clock.now)))) == t.R_UNKNOWN_KID
    assert len(calls) == 3
    # TTL expiry refetches; the old key removed → its tokens refused
    published["jwks"] = public_jwks(new)
    clock.now += 301
    old = TokenIssuer(ISS, es_key, clock=clock).issue("u", AUD, fhirUser="Practitioner/1")
    assert reason(v, old) == t.R_UNKNOWN_KID


def test_jwks_fetch_failure(es_key, clock):
    state = {"fail": True}

    def fetch():
        if state["fail"]:
            raise OSError("network down")
        return public_jwks(es_key)

    cache = JwksCache(fetch, ttl=10, clock=clock)
    with pytest.raises(KeysUnavailable):
        cache.key_set()
    state["fail"] = False
    with pytest.raises(KeysUnavailable):  # retried at most once per min_refetch_interval
        cache.key_set()
    clock.now += 6
    assert cache.lookup("es-1")
    state["fail"] = True
    clock.now += 20  # stale: refetch fails, the cached keys are kept
    assert cache.lookup("es-1")


def test_jwks_ignores_private_and_symmetric_members(es_key):
    jwks = {
        "keys": [
            es_key.as_dict(private=True),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "h"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            public_jwks(es_key)["keys"][0],
        ]
    }
    cache = JwksCache(jwks)
    assert [k.kid for k in cache.key_set()] == ["es-1"]
    assert not cache.key_set().keys[0].is_private


# -- keys -------------------------------------------------------------------------------------


def test_public_jwks_has_no_private_members(es_key, rs_key):
    for k in public_jwks([es_key, rs_key])["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(k)
        assert k["use"] == "sig" and k["alg"] in ("ES256", "RS256") and k["kid"]


def test_load_private_key(tmp_path, monkeypatch, es_key, rs_key):
    path = tmp_path / "key.json"
    path.write_text(json.dumps(es_key.as_dict(private=True)))
    assert load_private_key(path).kid == "es-1"
    monkeypatch.setenv("SOCLE_TEST_KEY", rs_key.as_pem(private=True).decode())
    assert load_private_key(env="SOCLE_TEST_KEY").is_private
    monkeypatch.setenv("SOCLE_TEST_KEY", rs_key.as_pem(private=False).decode())
    with pytest.raises(KeyLoadError, match="not a private key"):
        load_private_key(env="SOCLE_TEST_KEY")
    secretish = "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----"
    monkeypatch.setenv("SOCLE_TEST_KEY", secretish)
    with pytest.raises(KeyLoadError) as exc:
        load_private_key(env="SOCLE_TEST_KEY")
    assert "TOPSECRET" not in str(exc.value) and exc.value.__cause__ is None
    with pytest.raises(KeyLoadError):
        load_private_key(tmp_path / "absent.pem")


def test_issuer_requires_private_key(es_key):
    pub = public_jwks(es_key)["keys"][0]
    from joserfc.jwk import import_key

    with pytest.raises(ValueError):
        TokenIssuer(ISS, import_key(pub))


def test_real_clock_smoke(es_key):
    v = TokenVerifier([IssuerConfig(ISS, public_jwks(es_key))], AUD)
    tok = TokenIssuer(ISS, es_key).issue("u", AUD, "user/*.rs", fhirUser="Practitioner/1")
    p = v.verify(tok)
    assert p.expires_at and p.expires_at > time.time()
