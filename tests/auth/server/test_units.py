"""The authorisation server's pure parts: TOTP and PKCE against their RFC vectors, scope
granting, client-assertion claims, authorisation-request validation, passwords, form tokens.
Property-based where the parser or validator is ours."""

from __future__ import annotations

import string
import time
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from socle.auth.scopes import parse_scope
from socle.auth.server import passwords, pkce, totp
from socle.auth.server.authorize_request import (
    AuthorizeRequest,
    Redirected,
    Untrusted,
    validate_authorize,
)
from socle.auth.server.client_auth import check_assertion_claims
from socle.auth.server.clients import Client, ClientError, _check_redirect_uri
from socle.auth.server.scope_grant import describe, grant, within
from socle.auth.tokens import Role
from socle.web import check_form_token, form_token

# -- TOTP (RFC 6238 appendix B, RFC 4226 appendix D) ---------------------------------------------

SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890" * 6 + b"1234",
}
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), RFC6238)
def test_totp_rfc6238_vectors(at: int, sha1: str, sha256: str, sha512: str) -> None:
    step = at // 30
    assert totp.hotp(SEEDS["SHA1"], step, 8, "SHA1") == sha1
    assert totp.hotp(SEEDS["SHA256"], step, 8, "SHA256") == sha256
    assert totp.hotp(SEEDS["SHA512"], step, 8, "SHA512") == sha512


def test_hotp_rfc4226_vectors() -> None:
    expected = [
        "755224",
        "287082",
        "359152",
        "969429",
        "338314",
        "254676",
        "287922",
        "162583",
        "399871",
        "520489",
    ]
    assert [totp.hotp(SEEDS["SHA1"], i) for i in range(10)] == expected


@given(st.binary(min_size=10, max_size=40), st.integers(min_value=60, max_value=2**33))
def test_totp_accepts_one_step_of_drift_only(key: bytes, at: int) -> None:
    import base64

    secret = base64.b32encode(key).decode().rstrip("=")
    code = totp.totp(secret, at)
    assert totp.matching_step(secret, code, at) == at // 30
    assert totp.matching_step(secret, code, at + 30) == at // 30
    far = at + 120
    assume(all(totp.totp(secret, far + d * 30) != code for d in (-1, 0, 1)))
    assert totp.matching_step(secret, code, far) is None


@given(st.text(max_size=10))
def test_totp_rejects_anything_but_six_digits(code: str) -> None:
    assume(not (len(code.strip().replace(" ", "")) == 6 and code.strip().isdigit()))
    assert totp.matching_step(totp.new_secret(), code) is None


def test_provisioning_uri() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", "jeanne dupont")
    assert uri.startswith("otpauth://totp/Socle%3Ajeanne%20dupont?secret=JBSWY3DPEHPK3PXP")
    assert "digits=6" in uri and "period=30" in uri


# -- PKCE ---------------------------------------------------------------------------------------


def test_pkce_rfc7636_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce.s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce.verifier_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")


VERIFIER_CHARS = string.ascii_letters + string.digits + "-._~"


@given(st.text(alphabet=VERIFIER_CHARS, min_size=43, max_size=128), st.data())
def test_pkce_any_other_verifier_fails(verifier: str, data: st.DataObject) -> None:
    challenge = pkce.s256(verifier)
    assert pkce.verifier_matches(verifier, challenge)
    i = data.draw(st.integers(0, len(verifier) - 1))
    c = data.draw(st.sampled_from(VERIFIER_CHARS))
    assume(c != verifier[i])
    assert not pkce.verifier_matches(verifier[:i] + c + verifier[i + 1 :], challenge)


@given(st.text(max_size=200))
def test_pkce_malformed_verifiers_never_match(verifier: str) -> None:
    assume(not pkce.valid_verifier(verifier))
    assert not pkce.verifier_matches(verifier, pkce.s256("a" * 43))


# -- scope granting -----------------------------------------------------------------------------

CONTEXT = st.sampled_from(["patient", "user", "system"])
TYPE = st.sampled_from(["*", "Observation", "Patient", "Consent"])
LETTERS = st.sets(st.sampled_from("cruds"), min_size=1).map(
    lambda s: "".join(c for c in "cruds" if c in s)
)
RESOURCE_SCOPE = st.builds(lambda c, t, p: f"{c}/{t}.{p}", CONTEXT, TYPE, LETTERS)
OTHER_SCOPE = st.sampled_from(
    ["openid", "fhirUser", "profile", "launch/patient", "offline_access", "scope_all", "launch"]
)
ANY_SCOPE = st.one_of(
    RESOURCE_SCOPE,
    OTHER_SCOPE,
    RESOURCE_SCOPE.map(lambda s: s + "?category=laboratory"),
    st.sampled_from(["patient/Observation.read", "user/*.*", "patient/Observation.sr", "bad/x.r"]),
)
SCOPES = st.lists(ANY_SCOPE, max_size=8).map(" ".join)
ROLE = st.sampled_from([Role.PATIENT, Role.PROFESSIONAL, Role.SYSTEM, Role.OPERATOR])


@given(SCOPES, SCOPES, ROLE)
def test_grant_never_exceeds_request_nor_allowed(requested: str, allowed: str, role: Role) -> None:
    granted = grant(requested, allowed, role)
    assert len(granted) == len(set(granted))
    assert set(granted) <= set(requested.split())
    allowed_scopes = [s for s in map(parse_scope, allowed.split()) if s]
    for item in granted:
        scope = parse_scope(item)
        if scope is None:
            assert item in allowed.split()  # non-resource scopes: verbatim
            assert role in (Role.PATIENT, Role.PROFESSIONAL)
        else:
            assert scope.restriction is None
            assert any(within(scope, a) for a in allowed_scopes)
            if role == Role.PROFESSIONAL:
                assert scope.context == "user"
            elif role == Role.PATIENT:
                assert scope.context in ("patient", "user")
            else:
                assert scope.context == "system"
    # Granting is idempotent: what was granted is granted again.
    assert grant(" ".join(granted), allowed, role) == granted


def test_grant_examples() -> None:
    allowed = "openid patient/*.rs user/Observation.cruds system/*.rs"
    assert grant("patient/Observation.rs patient/Observation.cruds", allowed, Role.PATIENT) == [
        "patient/Observation.rs"
    ]
    assert grant("patient/Observation.read", allowed, Role.PATIENT) == ["patient/Observation.read"]
    assert grant("user/Observation.rs?code=x", allowed, Role.PROFESSIONAL) == []
    assert grant("launch/patient openid", allowed + " launch/patient", Role.PROFESSIONAL) == [
        "openid"
    ]
    assert grant("system/Patient.rs openid", allowed, Role.SYSTEM) == ["system/Patient.rs"]


def test_scope_descriptions_are_french() -> None:
    assert describe("patient/Observation.rs") == (
        "Lire et rechercher les observations et résultats d'examens du dossier du patient "
        "sélectionné"
    )
    assert describe("user/*.cruds").startswith("Créer, lire, modifier, supprimer et rechercher")
    assert describe("openid") == "Confirmer votre identité à l'application"


# -- client assertions --------------------------------------------------------------------------

NOW = 1_750_000_000.0
AUD = "https://socle.example/auth/token"


def good_claims() -> dict[str, Any]:
    return {"iss": "c1", "sub": "c1", "aud": AUD, "exp": NOW + 200, "iat": NOW, "jti": "j"}


def test_good_assertion_claims() -> None:
    assert check_assertion_claims(good_claims(), "c1", AUD, NOW) is None
    assert check_assertion_claims({**good_claims(), "aud": [AUD, "x"]}, "c1", AUD, NOW) is None


JSON_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)


@given(st.sampled_from(["iss", "sub", "aud", "exp", "jti"]), JSON_VALUE, st.booleans())
def test_any_wrong_assertion_claim_is_refused(name: str, value: Any, drop: bool) -> None:
    claims = good_claims()
    if drop:
        del claims[name]
    else:
        assume(value != claims[name])
        if name == "exp" and isinstance(value, int | float) and not isinstance(value, bool):
            assume(not NOW - 30 < value <= NOW + 330)  # still a valid expiry
        if name == "jti" and isinstance(value, str):
            assume(not 0 < len(value) <= 256)
        claims[name] = value
    assert check_assertion_claims(claims, "c1", AUD, NOW) is not None


# -- authorisation requests ---------------------------------------------------------------------

CLIENT = Client(
    "app", "public", "none", ("https://app.example/cb",), "openid patient/*.rs user/*.rs"
)
FHIR = "https://socle.example/fhir"


def good_params() -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "app",
        "redirect_uri": "https://app.example/cb",
        "scope": "openid patient/*.rs",
        "state": "s",
        "code_challenge": pkce.s256("v" * 43),
        "code_challenge_method": "S256",
        "aud": FHIR,
    }


def test_good_authorize_request() -> None:
    result = validate_authorize(good_params(), CLIENT, FHIR)
    assert isinstance(result, AuthorizeRequest) and result.scope == "openid patient/*.rs"


PARAM_NAMES = st.sampled_from(
    [
        "response_type",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "aud",
        "launch",
        "request",
        "nonce",
    ]
)


@given(st.dictionaries(PARAM_NAMES, st.text(max_size=60), max_size=6), st.booleans())
def test_authorize_never_redirects_to_an_untrusted_uri(changes: dict[str, str], keep: bool) -> None:
    params = {**good_params(), **changes} if keep else changes
    result = validate_authorize(params, CLIENT, FHIR)
    if params.get("redirect_uri") not in CLIENT.redirect_uris:
        assert isinstance(result, Untrusted)
    if isinstance(result, AuthorizeRequest):
        assert params["code_challenge_method"] == "S256"
        assert pkce.valid_challenge(params["code_challenge"]) and params["state"]
        assert params.get("aud", FHIR).rstrip("/") == FHIR
        assert "launch" not in params and params["response_type"] == "code"
    else:
        assert isinstance(result, Untrusted | Redirected)
    assert validate_authorize(params, None, FHIR) == Untrusted(
        "Cette application n'est pas enregistrée auprès de Socle."
    )


def test_redirect_uri_registration_rules() -> None:
    for ok in ("https://app.example/cb", "http://127.0.0.1:9/cb", "fr.socle.app:/callback"):
        _check_redirect_uri(ok)
    for bad in ("http://app.example/cb", "https://app.example/cb#x", "javascript:alert(1)"):
        with pytest.raises(ClientError):
            _check_redirect_uri(bad)


# -- passwords and form tokens ------------------------------------------------------------------


def test_password_hash_round_trip() -> None:
    stored = passwords.hash_password("un mot de passe solide")
    assert stored.startswith("scrypt$32768$8$1$")
    assert passwords.verify_password("un mot de passe solide", stored)
    assert not passwords.verify_password("un mot de passe solidE", stored)
    assert not passwords.verify_password("x", "garbage")
    assert not passwords.verify_password("x", "bcrypt$1$2$3$4$5")
    assert passwords.check_strength("court") is not None
    assert passwords.check_strength("aaaaaaaaaaaaaaaa") is not None
    assert passwords.check_strength("correct horse battery staple") is None


def test_an_unknown_login_costs_a_full_scrypt_and_never_matches() -> None:
    """The dummy hash is made without scrypt, but verifying against it runs scrypt with the
    parameters of a real hash (same time as a known account's wrong password)."""
    scheme, n, r, p, salt, digest = passwords._DUMMY.split("$")
    real = passwords.hash_password("x" * 16).split("$")
    assert (scheme, n, r, p) == tuple(real[:4])
    assert len(salt) == len(real[4]) and len(digest) == len(real[5])
    assert not passwords.verify_password("", passwords._DUMMY)
    passwords.burn_time("x")


@given(st.text(max_size=30), st.text(max_size=30))
def test_form_tokens_are_bound_to_purpose_and_request(purpose: str, binding: str) -> None:
    key = b"k" * 32
    token = form_token(key, purpose, binding)
    assert check_form_token(key, purpose, binding, token)
    assert not check_form_token(key, purpose + "x", binding, token)
    assert not check_form_token(key, purpose, binding + "x", token)
    assert not check_form_token(b"o" * 32, purpose, binding, token)
    assert not check_form_token(key, purpose, binding, token[:-2])
    assert not check_form_token(key, purpose, binding, None)


@settings(max_examples=50)
@given(st.text(max_size=60))
def test_forged_form_tokens_are_refused(token: str) -> None:
    assert not check_form_token(b"k" * 32, "consent", "r", token)


def test_form_tokens_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    key = b"k" * 32
    token = form_token(key, "consent", "r")
    later = time.time() + 16 * 60
    monkeypatch.setattr(time, "time", lambda: later)
    assert not check_form_token(key, "consent", "r", token)


def test_stand_in_is_off_once_the_real_psc_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from socle.auth.server.config import AuthServerConfig
    from socle.config import Settings

    monkeypatch.setenv("SOCLE_PUBLIC_URL", "https://socle.example")
    for name in ("SOCLE_PSC_ISSUER", "SOCLE_PSC_STANDIN", "SOCLE_PSC_DISCOVERY_URL"):
        monkeypatch.delenv(name, raising=False)
    cfg = AuthServerConfig.from_settings(Settings.from_env("/tmp/unused"))
    assert cfg.uses_standin and cfg.psc_issuer == "https://socle.example/psc-standin"
    assert cfg.secure_cookies and cfg.fhir_audience == "https://socle.example/fhir"
    real = "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet"
    monkeypatch.setenv("SOCLE_PSC_ISSUER", real)
    monkeypatch.setenv("SOCLE_PSC_DISCOVERY_URL", real + "/.well-known/wallet-openid-configuration")
    cfg = AuthServerConfig.from_settings(Settings.from_env("/tmp/unused"))
    assert not cfg.standin_enabled and not cfg.uses_standin
    assert cfg.psc_discovery_url.endswith("wallet-openid-configuration")
