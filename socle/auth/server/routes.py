"""Every route of the authorisation server, from its flows (:mod:`.flows`), and of the PSC
stand-in when it is enabled; :func:`auth_routes` is mounted by the server."""

from __future__ import annotations

from starlette.routing import BaseRoute

from ...config import Settings
from .flows import AuthServer, Flow
from .flows.authorize import Authorize
from .flows.consent import Consent
from .flows.discovery import Discovery
from .flows.operator_login import OperatorLogin
from .flows.patient_login import PatientLogin
from .flows.professional_login import ProfessionalLogin
from .flows.token import Token
from .flows.token_status import TokenStatus
from .flows.userinfo import UserInfo
from .flows.web_login import WebLogin
from .psc_standin import standin_routes

FLOWS: tuple[type[Flow], ...] = (
    Discovery,
    Authorize,
    ProfessionalLogin,
    PatientLogin,
    OperatorLogin,
    Consent,
    Token,
    TokenStatus,
    UserInfo,
    WebLogin,
)


def auth_routes(settings: Settings) -> list[BaseRoute]:
    server = AuthServer(settings)
    routes = [route for flow in FLOWS for route in flow(server).routes()]
    if server.cfg.standin_enabled:
        routes += standin_routes(settings, server.cfg)
    return routes
