"""No /fhir data without a valid token: forged, expired, wrong-audience, wrong-issuer → 401."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import httpx
import pytest

from socle.auth.keys import generate_signing_key
from socle.auth.tokens import TokenIssuer
from socle.testing import ROOT, token_for


def _get(server, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(server.fhir + path, headers=headers, timeout=10)


def _assert_401(r: httpx.Response, described: bool = True) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) == described


def _forge(token: str, **changes) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


def test_metadata_is_public_and_data_is_not(server):
    assert httpx.get(server.fhir + "/metadata").status_code == 200
    for path in ("/Patient", "/Patient/x", "/_history", "/Patient/x/$everything", ""):
        _assert_401(_get(server, path, None), described=False)
    r = httpx.post(server.fhir, json={"resourceType": "Bundle", "type": "batch"})
    assert r.status_code == 401


@pytest.mark.parametrize(
    "case",
    ["signature", "expired", "audience", "issuer", "alg-none", "unknown-key", "garbage", "role"],
)
def test_bad_tokens_are_refused(server, case):
    good = token_for(server)
    assert _get(server, "/Patient?_count=1", good).status_code == 200
    if case == "signature":
        token = _forge(good, socle_role="operator", sub="someone-else")
    elif case == "expired":
        token = token_for(server, exp=int(time.time()) - 3600)
    elif case == "audience":
        token = token_for(server, aud="https://another-server.example/fhir")
    elif case == "issuer":
        # a well-formed token from an issuer Socle does not trust, with its own key
        other = TokenIssuer(server.base, generate_signing_key("ES256"))
        token = other.issue("x", server.fhir, scope="system/*.cruds", socle_role="operator")
    elif case == "alg-none":
        header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        token = header + "." + good.split(".")[1] + "."
    elif case == "unknown-key":
        other = TokenIssuer(server.base, generate_signing_key("ES256", kid="not-ours"))
        token = other.issue("x", server.fhir, scope="system/*.cruds", socle_role="operator")
    elif case == "garbage":
        token = "not-a-jwt"
    else:
        token = token_for(server, socle_role="superuser")
    _assert_401(_get(server, "/Patient?_count=1", token))


def test_socle_token_refuses_a_non_demo_data_dir(server):
    r = subprocess.run(  # noqa: S603 - our own CLI
        [
            sys.executable,
            "-m",
            "socle.cli",
            "token",
            "operator",
            "--data-dir",
            str(server.database.data_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "not a demo data dir" in r.stderr
