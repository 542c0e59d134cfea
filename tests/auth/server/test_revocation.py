"""Revocation takes effect at once on every worker: a 2-worker server, tokens of the
client_credentials, authorization_code and refresh_token grants, revoked through /auth/revoke,
then refused by /fhir on every following request, over new connections (so both workers
answer)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from joserfc.jwk import ECKey

from socle.auth.keys import public_jwks
from socle.auth.server import register_client
from socle.config import Settings
from socle.database import release_embedded, resolve_url
from socle.testing import ServerProcess, database_beside, free_port, start_server, stop_server

from .helpers import (
    APP_REDIRECT,
    JWT_BEARER,
    assertion,
    browser,
    new_verifier,
    professional_code,
    redeem,
    seed_practitioner,
)

APP = "revoke-app"
BACKEND = "revoke-backend"
RPPS = "10007654321"
KEY = ECKey.generate_key("P-384", parameters={"alg": "ES384"})
KEY.ensure_kid()


@pytest.fixture(scope="module")
def server(database) -> Iterator[ServerProcess]:
    with database_beside(database, migrated=True) as db:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        srv = start_server(db, port=port, workers=2, extra_env={"SOCLE_PUBLIC_URL": base})
        try:
            seeded = seed_practitioner(srv, RPPS)
            url = db.url or resolve_url(Settings.from_env(db.data_dir))
            with psycopg.connect(url, autocommit=True) as conn:
                register_client(
                    conn,
                    APP,
                    public=True,
                    redirect_uris=[APP_REDIRECT],
                    scopes="openid fhirUser offline_access user/*.rs",
                )
                register_client(
                    conn,
                    BACKEND,
                    public=False,
                    scopes="system/*.rs",
                    jwks=public_jwks(KEY),
                    role="system",
                    organization=seeded["organization"],
                )
            yield srv
        finally:
            stop_server(srv)
            release_embedded(db.data_dir)


def _backend_form(server: ServerProcess) -> dict[str, str]:
    return {
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion(KEY, BACKEND, server.base + "/auth/token"),
    }


def _statuses(server: ServerProcess, token: str, n: int) -> list[int]:
    """n requests, each on a new connection; the statuses."""
    statuses = []
    for _ in range(n):
        with httpx.Client(timeout=10) as http:  # a new connection each time
            r = http.get(
                server.fhir + "/Organization?_count=1",
                headers={"Authorization": f"Bearer {token}"},
            )
            statuses.append(r.status_code)
    return statuses


def _assert_dead_at_once(
    server: ServerProcess, token: str, revoke_form: dict[str, str], revoked: str | None = None
) -> None:
    """Revoke ``revoked`` (the token itself by default): ``token`` is refused at once."""
    # the token works, and has been cached by the verifier of both workers
    assert set(_statuses(server, token, 8)) == {200}
    r = httpx.post(server.base + "/auth/revoke", data={"token": revoked or token, **revoke_form})
    assert r.status_code == 200, r.text
    statuses = _statuses(server, token, 40)
    assert statuses == [401] * 40, statuses


def _workers(server: ServerProcess) -> set[str]:
    """The worker processes uvicorn started (their log lines), to be sure there are two."""
    return set(re.findall(r"Started server process \[(\d+)\]", server.log.read_text()))


def test_client_credentials_token_dies_at_once(server: ServerProcess) -> None:
    assert len(_workers(server)) == 2
    r = httpx.post(
        server.base + "/auth/token",
        data={"grant_type": "client_credentials", **_backend_form(server)},
    )
    assert r.status_code == 200, r.text
    _assert_dead_at_once(server, r.json()["access_token"], _backend_form(server))


def test_code_and_refresh_tokens_die_at_once(server: ServerProcess) -> None:
    verifier = new_verifier()
    with browser(server) as http:
        code, _ = professional_code(http, APP, RPPS, "openid offline_access user/*.rs", verifier)
        tokens = redeem(http, APP, code, verifier).json()
    _assert_dead_at_once(server, tokens["access_token"], {"client_id": APP})
    refreshed = httpx.post(
        server.base + "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": APP,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    _assert_dead_at_once(server, refreshed.json()["access_token"], {"client_id": APP})
    # Revoking a refresh token revokes the grant: the access tokens issued from it die too.
    again = httpx.post(
        server.base + "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refreshed.json()["refresh_token"],
            "client_id": APP,
        },
    ).json()
    _assert_dead_at_once(
        server, again["access_token"], {"client_id": APP}, revoked=again["refresh_token"]
    )
    r = httpx.post(
        server.base + "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": again["refresh_token"],
            "client_id": APP,
        },
    )
    assert r.json()["error"] == "invalid_grant"
