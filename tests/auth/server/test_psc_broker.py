"""Socle's Pro Santé Connect relying party against a mocked PSC: every ID token and userinfo
check (OIDC Core §3.1.3.7), signed userinfo, key rotation, an unreachable PSC."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from socle.auth.keys import public_jwks
from socle.auth.server.config import AuthServerConfig
from socle.auth.server.psc_broker import UPSTREAM_ERRORS, PscBroker, PscError
from socle.config import Settings

PSC = "https://psc.example/realms/esante-wallet"
NONCE = "n-0S6_WzA2Mj"


def config() -> AuthServerConfig:
    cfg = AuthServerConfig.from_settings(Settings.from_env("/tmp/unused"))
    return replace(
        cfg,
        psc_issuer=PSC,
        psc_discovery_url=PSC + "/.well-known/wallet-openid-configuration",
        psc_client_id="socle-rp",
        standin_enabled=False,
    )


class FakePsc:
    """A PSC whose ID token and userinfo each test bends."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256", parameters={"alg": "ES256"})
        self.key.ensure_kid()
        self.published = [self.key]
        self.id_claims: dict[str, Any] = {}
        self.userinfo: dict[str, Any] | str = {}
        self.signing_key = self.key
        self.calls: list[str] = []

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "ES256", "kid": self.signing_key.kid}
        return jwt.encode(header, claims, self.signing_key, algorithms=["ES256"])

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(path)
        if path.endswith("wallet-openid-configuration"):
            return httpx.Response(
                200,
                json={
                    "issuer": PSC,
                    "authorization_endpoint": "https://wallet.psc.example/auth",
                    "token_endpoint": PSC + "/token",
                    "userinfo_endpoint": PSC + "/userinfo",
                    "jwks_uri": PSC + "/certs",
                },
            )
        if path.endswith("/certs"):
            return httpx.Response(200, json=public_jwks(self.published))
        if path.endswith("/token"):
            assert request.headers["authorization"].startswith("Basic ")
            body = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            assert body["code_verifier"] == "v" * 43
            return httpx.Response(
                200, json={"access_token": "at", "id_token": self.sign(self.id_claims)}
            )
        if path.endswith("/userinfo"):
            if isinstance(self.userinfo, str):
                return httpx.Response(
                    200, text=self.userinfo, headers={"content-type": "application/jwt"}
                )
            return httpx.Response(200, json=self.userinfo)
        return httpx.Response(404)


def good_id_claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": PSC,
        "sub": "f:550dc1c8-d97b-4b1e",
        "aud": "socle-rp",
        "exp": now + 60,
        "iat": now,
        "nonce": NONCE,
        "acr": "eidas1",
        "auth_time": now,
    }


def good_userinfo() -> dict[str, Any]:
    return {
        "sub": "f:550dc1c8-d97b-4b1e",
        "SubjectNameID": "810001234567",
        "given_name": "Claire",
        "family_name": "MARTIN",
    }


def run(psc: FakePsc) -> Any:
    broker = PscBroker(config(), "secret", transport=httpx.MockTransport(psc.handler))
    return asyncio.run(broker.finish("code", NONCE, "v" * 43))


def test_good_login() -> None:
    psc = FakePsc()
    psc.id_claims, psc.userinfo = good_id_claims(), good_userinfo()
    identity = run(psc)
    assert identity.national_id == "810001234567" and identity.acr == "eidas1"
    assert identity.family_name == "MARTIN"


def test_signed_userinfo_is_verified() -> None:
    psc = FakePsc()
    psc.id_claims = good_id_claims()
    psc.userinfo = psc.sign({**good_userinfo(), "iss": PSC, "exp": int(time.time()) + 60})
    assert run(psc).national_id == "810001234567"


BAD_ID_TOKENS = {
    "wrong nonce": {"nonce": "other"},
    "no nonce": {"nonce": None},
    "weak acr": {"acr": "eidas0"},
    "no acr": {"acr": None},
    "other issuer": {"iss": "https://evil.example"},
    "other audience": {"aud": "someone-else"},
    "several audiences without azp": {"aud": ["socle-rp", "other"]},
    "expired": {"exp": int(time.time()) - 3600},
    "issued in the future": {"iat": int(time.time()) + 3600},
}


@pytest.mark.parametrize("case", sorted(BAD_ID_TOKENS))
def test_bad_id_tokens_are_refused(case: str) -> None:
    psc = FakePsc()
    claims = {**good_id_claims(), **BAD_ID_TOKENS[case]}
    psc.id_claims = {k: v for k, v in claims.items() if v is not None}
    psc.userinfo = good_userinfo()
    with pytest.raises(PscError):
        run(psc)


def test_forged_signature_and_userinfo_mismatch_are_refused() -> None:
    psc = FakePsc()
    psc.id_claims, psc.userinfo = good_id_claims(), good_userinfo()
    forger = ECKey.import_key({**ECKey.generate_key("P-256").as_dict(private=True)})
    psc.signing_key = ECKey.import_key({**forger.as_dict(private=True), "kid": psc.key.kid})
    with pytest.raises(PscError, match="signature"):
        run(psc)
    psc = FakePsc()
    psc.id_claims = good_id_claims()
    psc.userinfo = {**good_userinfo(), "sub": "someone-else"}
    with pytest.raises(PscError, match="sub"):
        run(psc)
    psc.userinfo = {k: v for k, v in good_userinfo().items() if k != "SubjectNameID"}
    with pytest.raises(PscError, match="SubjectNameID"):
        run(psc)


def test_key_rotation_refetches_the_jwks_once() -> None:
    psc = FakePsc()
    psc.id_claims, psc.userinfo = good_id_claims(), good_userinfo()
    broker = PscBroker(config(), "secret", transport=httpx.MockTransport(psc.handler))
    asyncio.run(broker.finish("code", NONCE, "v" * 43))
    new = ECKey.generate_key("P-256", parameters={"alg": "ES256"})
    new.ensure_kid()
    psc.published, psc.signing_key = [psc.key, new], new
    broker._jwks_at -= 60  # past the minimum refetch interval
    asyncio.run(broker.finish("code", NONCE, "v" * 43))
    assert psc.calls.count("/realms/esante-wallet/certs") == 2


def test_authorization_url_asks_psc_for_eidas1() -> None:
    psc = FakePsc()
    broker = PscBroker(config(), "secret", transport=httpx.MockTransport(psc.handler))
    url = asyncio.run(broker.authorization_url("st", "no", "v" * 43))
    assert url.startswith("https://wallet.psc.example/auth?")
    assert "scope=openid+scope_all" in url and "acr_values=eidas1" in url
    assert "code_challenge_method=S256" in url and "client_id=socle-rp" in url


def test_unreachable_psc_fails_fast_the_second_time() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    broker = PscBroker(config(), "secret", transport=httpx.MockTransport(down))
    with pytest.raises(UPSTREAM_ERRORS):
        asyncio.run(broker.discovery())
    with pytest.raises(PscError, match="a moment ago"):
        asyncio.run(broker.discovery())
