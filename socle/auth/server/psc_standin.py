"""A stand-in for Pro Santé Connect, for the embedded default, demos and tests.

It speaks OIDC like PSC (fr-identity §4): code flow, ``scope=openid scope_all``,
``acr_values=eidas1``, an ID token with ``acr=eidas1``, a userinfo with ``SubjectNameID``
(``8`` + RPPS) and ``SubjectRefPro``. Instead of a CPS card or e-CPS, the professional types his
RPPS or picks a practitioner of the FHIR store: **it authenticates nobody** and is enabled only
while Socle is not configured for the real PSC (``SOCLE_PSC_ISSUER`` unset, or
``SOCLE_PSC_STANDIN=1``). It has its own signing key and client secret (data dir, 0600).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

from joserfc import jws
from joserfc.errors import JoseError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...config import Settings
from ...fhir.engine import Engine
from ...web import (
    RepeatedParameter,
    check_form_token,
    client_ip,
    form_data,
    form_token,
    query_params,
    redirect,
)
from ..keys import public_jwks
from ..tokens import TokenIssuer
from . import directory, grants_store, ratelimit
from .config import AuthServerConfig
from .pkce import valid_challenge, verifier_matches
from .responses import error_page, oauth_error, render, token_json
from .secrets_store import csrf_key, standin_client_secret, standin_signing_key

_AUTHORIZE_PARAMS = (
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "acr_values",
)
TITLE = "Pro Santé Connect (simulation)"


def _national_id(text: str) -> str | None:
    text = text.strip().replace(" ", "")
    if len(text) == 11 and text.isdigit():
        return "8" + text  # an RPPS number
    if len(text) == 12 and text.isdigit() and text[0] in "08":
        return text  # already an idNat_PS (8 + RPPS, 0 + ADELI)
    return None


def _subject(national_id: str) -> str:
    # PSC's `sub` is an opaque identifier, not the national id: mimic that.
    return "psc-" + hashlib.sha256(b"psc-standin:" + national_id.encode()).hexdigest()[:24]


def standin_routes(settings: Settings, cfg: AuthServerConfig) -> list[BaseRoute]:
    issuer_url = cfg.standin_issuer

    def signer() -> TokenIssuer:
        return TokenIssuer(issuer_url, standin_signing_key(settings), lifetime=300)

    def engine(request: Request) -> Engine:
        return request.app.state.engine  # type: ignore[no-any-return]

    def check_authorize(params: dict[str, str]) -> str | None:
        if params.get("client_id") != cfg.psc_client_id:
            return "Application inconnue de Pro Santé Connect."
        if params.get("redirect_uri") != cfg.psc_callback:
            return "Adresse de retour non enregistrée."
        if "openid" not in params.get("scope", "").split():
            return "Le scope openid est requis."
        if not params.get("state") or not params.get("nonce"):
            return "Paramètres state et nonce requis."
        challenge = params.get("code_challenge")
        if challenge is not None and (
            params.get("code_challenge_method") != "S256" or not valid_challenge(challenge)
        ):
            return "PKCE : seule la méthode S256 est acceptée."
        return None

    def binding(params: dict[str, str]) -> str:
        return json.dumps({k: params.get(k) or None for k in _AUTHORIZE_PARAMS}, sort_keys=True)

    async def metadata(request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": issuer_url,
                "authorization_endpoint": issuer_url + "/authorize",
                "token_endpoint": issuer_url + "/token",
                "userinfo_endpoint": issuer_url + "/userinfo",
                "jwks_uri": issuer_url + "/jwks",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "scopes_supported": ["openid", "scope_all"],
                "acr_values_supported": ["eidas1"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "code_challenge_methods_supported": ["S256"],
                "claims_supported": [
                    "sub",
                    "SubjectNameID",
                    "SubjectRefPro",
                    "given_name",
                    "family_name",
                    "acr",
                ],
            }
        )

    async def jwks(request: Request) -> Response:
        return JSONResponse(public_jwks(standin_signing_key(settings)))

    async def authorize_page(request: Request) -> Response:
        try:
            params = query_params(request)
        except RepeatedParameter:
            return error_page("Paramètre répété dans la requête.", title=TITLE)
        problem = check_authorize(params)
        if problem:
            return error_page(problem, title=TITLE)
        return await _login_page(request, params, None)

    async def _login_page(
        request: Request, params: dict[str, str], error: str | None, status: int = 200
    ) -> Response:
        practitioners = await directory.demo_practitioners(engine(request))
        return render(
            "psc_standin.html",
            status=status,
            form_targets=[cfg.psc_callback],
            title=TITLE,
            params={k: params.get(k) or "" for k in _AUTHORIZE_PARAMS},
            csrf=form_token(csrf_key(settings), "psc-standin", binding(params)),
            practitioners=practitioners,
            error=error,
        )

    async def authorize_submit(request: Request) -> Response:
        try:
            form = await form_data(request)
        except RepeatedParameter:
            return error_page("Paramètre répété dans le formulaire.", title=TITLE)
        params = {k: form[k] for k in _AUTHORIZE_PARAMS if form.get(k)}
        problem = check_authorize(params)
        if problem:
            return error_page(problem, title=TITLE)
        if not check_form_token(
            csrf_key(settings), "psc-standin", binding(params), form.get("csrf")
        ):
            return error_page("Formulaire expiré ou invalide : recommencez.", title=TITLE)
        async with engine(request).pool.connection() as conn:
            if not await ratelimit.allow(
                conn, "psc-standin", client_ip(request), cfg.login_rate_per_minute
            ):
                return error_page(
                    "Trop de tentatives : patientez une minute.", status=429, title=TITLE
                )
            national_id = _national_id(form.get("rpps") or form.get("national_id") or "")
            if national_id is None:
                return await _login_page(
                    request, params, "Numéro RPPS invalide (11 chiffres).", status=400
                )
            code = grants_store.new_secret()
            await conn.execute(
                "INSERT INTO psc_standin_code (code_hash, client_id, redirect_uri, national_id,"
                " nonce, code_challenge, expires_at) VALUES (%s, %s, %s, %s, %s, %s,"
                " now() + interval '60 seconds')",
                (
                    grants_store.digest(code),
                    params["client_id"],
                    params["redirect_uri"],
                    national_id,
                    params.get("nonce"),
                    params.get("code_challenge"),
                ),
            )
        query = urlencode({"code": code, "state": params["state"]})
        return redirect(f"{params['redirect_uri']}?{query}")

    def _client_authenticated(request: Request, form: dict[str, str]) -> bool:
        secret = standin_client_secret(settings)
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode()
            except (ValueError, UnicodeError):
                return False
            client_id, _, given = decoded.partition(":")
        else:
            client_id, given = form.get("client_id", ""), form.get("client_secret", "")
        return client_id == cfg.psc_client_id and hmac.compare_digest(
            given.encode(), secret.encode()
        )

    async def token(request: Request) -> Response:
        try:
            form = await form_data(request)
        except RepeatedParameter:
            return oauth_error("invalid_request", "repeated parameter")
        if not _client_authenticated(request, form):
            return oauth_error("invalid_client", "client authentication failed", 401)
        if form.get("grant_type") != "authorization_code":
            return oauth_error("unsupported_grant_type", "only authorization_code")
        async with engine(request).pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE psc_standin_code SET used_at = now() WHERE code_hash = %s"
                " AND used_at IS NULL AND expires_at > now()"
                " RETURNING client_id, redirect_uri, national_id, nonce, code_challenge",
                (grants_store.digest(form.get("code", "")),),
            )
            row = await cur.fetchone()
        if row is None or row[1] != form.get("redirect_uri"):
            return oauth_error("invalid_grant", "invalid authorization code")
        if row[4] is not None and not verifier_matches(form.get("code_verifier", ""), row[4]):
            return oauth_error("invalid_grant", "PKCE verification failed")
        national_id, nonce = row[2], row[3]
        issuer = signer()
        now = int(time.time())
        sub = _subject(national_id)
        id_token = issuer.issue(
            sub,
            cfg.psc_client_id,
            typ="JWT",
            nonce=nonce,
            acr="eidas1",
            auth_time=now,
            azp=cfg.psc_client_id,
            SubjectNameID=national_id,
        )
        access = issuer.issue(
            sub, issuer_url + "/userinfo", scope="openid scope_all", SubjectNameID=national_id
        )
        return token_json(
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": issuer.lifetime,
                "id_token": id_token,
                "scope": "openid scope_all",
            }
        )

    async def userinfo(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        claims = _verified(value.strip()) if scheme.lower() == "bearer" else None
        if claims is None:
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        national_id = str(claims["SubjectNameID"])
        pro = await directory.professional(engine(request), national_id)
        return JSONResponse(_userinfo_claims(str(claims["sub"]), national_id, pro))

    def _verified(token: str) -> dict[str, Any] | None:
        key = standin_signing_key(settings)
        try:
            obj = jws.extract_compact(token.encode("ascii"))
            if obj.headers().get("alg") != "ES256" or not jws.validate_compact(
                obj, key, algorithms=["ES256"]
            ):
                return None
            claims = json.loads(obj.payload)
        except (JoseError, ValueError, TypeError, UnicodeError):
            return None
        if (
            not isinstance(claims, dict)
            or claims.get("iss") != issuer_url
            or claims.get("aud") != issuer_url + "/userinfo"
            or not isinstance(claims.get("exp"), int)
            or claims["exp"] < time.time()
            or not claims.get("SubjectNameID")
        ):
            return None
        return claims

    return [
        Route("/psc-standin/.well-known/openid-configuration", metadata, methods=["GET"]),
        Route("/psc-standin/jwks", jwks, methods=["GET"]),
        Route("/psc-standin/authorize", authorize_page, methods=["GET"]),
        Route("/psc-standin/authorize", authorize_submit, methods=["POST"]),
        Route("/psc-standin/token", token, methods=["POST"]),
        Route("/psc-standin/userinfo", userinfo, methods=["GET", "POST"]),
    ]


def _userinfo_claims(
    sub: str, national_id: str, pro: directory.Professional | None
) -> dict[str, Any]:
    """PSC-shaped userinfo (fr-identity §4): ``SubjectNameID``, ``SubjectRefPro.exercices``."""
    given = pro.given_name if pro else "Prénom"
    family = pro.family_name if pro else "NOM"
    activities = []
    for org in pro.organizations if pro else ():
        finess = next(
            (
                str(i.get("value"))
                for i in org.get("identifier") or []
                if "finess" in str(i.get("system", ""))
            ),
            "",
        )
        activities.append(
            {
                "codeModeExercice": "S",
                "codeSecteurDactivite": "SA01",
                "codeRole": "FON-01",
                "numeroFinessSite": finess,
                "raisonSocialeSite": org.get("name", ""),
                "identifiantTechniqueDeLaStructure": f"Organization/{org.get('id')}",
            }
        )
    exercice = {
        "codeProfession": pro.profession_codes[0] if pro and pro.profession_codes else "10",
        "codeCategorieProfessionnelle": "C",
        "nomDexercice": family,
        "prenomDexercice": given,
        "activities": activities,
    }
    return {
        "sub": sub,
        "preferred_username": national_id,
        "SubjectNameID": national_id,
        "given_name": given,
        "family_name": family,
        "acr": "eidas1",
        "otherIds": [{"identifiant": national_id[1:], "origine": "RPPS", "qualite": 1}]
        if national_id.startswith("8")
        else [],
        "SubjectRefPro": {"codeCivilite": "DR", "exercices": [exercice]},
    }
