"""CORS for registered browser apps: their redirect URIs' origins, preflights without a token,
the demo's app from its origin; nothing for other origins or for the login pages."""

from __future__ import annotations

import time

import httpx
import psycopg

from socle.auth.cors import origin_of
from socle.auth.server.clients import register_client, register_demo_clients, remove_client
from socle.config import Settings
from socle.database import resolve_url
from socle.testing import ServerProcess, auth_headers

APP_ORIGIN = "https://appli.exemple.fr"
DEMO_ORIGIN = "http://127.0.0.1:9090"


def _connect(server: ServerProcess) -> psycopg.Connection:
    settings = Settings.from_env(server.database.data_dir)
    return psycopg.connect(server.database.url or resolve_url(settings), autocommit=True)


def _preflight(server: ServerProcess, origin: str, path: str = "/fhir/Patient") -> httpx.Response:
    return httpx.options(
        server.base + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )


def _eventually(server: ServerProcess, origin: str, status: int) -> httpx.Response:
    deadline = time.monotonic() + 15  # each worker re-reads the clients every few seconds
    while True:
        r = _preflight(server, origin)
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_origin_of_redirect_uris() -> None:
    assert origin_of("https://appli.exemple.fr/callback?x=1") == "https://appli.exemple.fr"
    assert origin_of("https://appli.exemple.fr:443/cb") == "https://appli.exemple.fr"
    assert origin_of("http://127.0.0.1:9090/callback") == "http://127.0.0.1:9090"
    assert origin_of("http://[::1]:8000/cb") == "http://[::1]:8000"
    assert origin_of("fr.exemple.app:/callback") is None


def test_registered_browser_app_gets_cors(server: ServerProcess) -> None:
    with _connect(server) as conn:
        register_client(
            conn,
            "cors-app",
            public=True,
            redirect_uris=[APP_ORIGIN + "/callback"],
            scopes="openid patient/*.rs",
            replace=True,
        )
    pre = _eventually(server, APP_ORIGIN, 204)
    assert pre.status_code == 204, pre.text
    assert pre.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "Authorization" in pre.headers["access-control-allow-headers"]
    assert "GET" in pre.headers["access-control-allow-methods"]

    r = httpx.get(
        server.fhir + "/Patient",
        params={"_count": 1},
        headers={"Origin": APP_ORIGIN, **auth_headers(server)},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "ETag" in r.headers["access-control-expose-headers"]
    # errors too, so the app can read the OperationOutcome
    r = httpx.get(server.fhir + "/Patient", headers={"Origin": APP_ORIGIN})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    # the token endpoint (a PKCE code exchange from the browser) and discovery
    r = httpx.post(
        server.base + "/auth/token", data={"grant_type": "nope"}, headers={"Origin": APP_ORIGIN}
    )
    assert r.status_code in (400, 401) and r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert _preflight(server, APP_ORIGIN, "/auth/token").status_code == 204
    r = httpx.get(server.base + "/.well-known/smart-configuration", headers={"Origin": APP_ORIGIN})
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    # never the login pages
    page = _preflight(server, APP_ORIGIN, "/auth/authorize")
    assert "access-control-allow-origin" not in page.headers

    with _connect(server) as conn:
        assert remove_client(conn, "cors-app")
    gone = _eventually(server, APP_ORIGIN, 403)
    assert gone.status_code == 403


def test_other_origins_get_nothing(server: ServerProcess) -> None:
    pre = _preflight(server, "https://malveillant.example")
    assert pre.status_code == 403
    assert pre.json()["resourceType"] == "OperationOutcome"
    assert "access-control-allow-origin" not in pre.headers
    r = httpx.get(
        server.fhir + "/Patient",
        params={"_count": 1},
        headers={"Origin": "https://malveillant.example", **auth_headers(server)},
    )
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_the_demo_app_works_from_its_origin(server: ServerProcess) -> None:
    with _connect(server) as conn:
        register_demo_clients(conn, Settings.from_env(server.database.data_dir))
    pre = _eventually(server, DEMO_ORIGIN, 204)
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == DEMO_ORIGIN
    r = httpx.get(server.fhir + "/metadata", headers={"Origin": DEMO_ORIGIN})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == DEMO_ORIGIN
