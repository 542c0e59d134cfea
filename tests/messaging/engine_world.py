"""The filing tests' world: the record's test region on the session's server, and beside it an
engine in this process on the same database (as a `socle worker` runs one), with the Access of
a signed-in professional or patient built as the authentication middleware builds it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Coroutine
from typing import Any

from starlette.datastructures import State

from socle.auth.enforcement import AuditServices, PolicyAccess
from socle.auth.middleware import AUDIT_KEY
from socle.auth.scopes import parse_scopes
from socle.auth.tokens import Principal, Role
from socle.config import Settings
from socle.contract import Runtime
from socle.server import service_runtime
from socle.services import SERVICES
from socle.testing import ServerProcess


class EngineThread:
    """An event loop in a thread holding a service runtime; `run` waits for a coroutine."""

    def __init__(self, server: ServerProcess) -> None:
        db = server.database
        self.settings = dataclasses.replace(
            Settings.from_env(db.data_dir), database_url=db.url, public_url=server.base
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._stack = contextlib.AsyncExitStack()
        self.runtime: Runtime = self.run(self._enter())

    async def _enter(self) -> Runtime:
        return await self._stack.enter_async_context(
            service_runtime(self.settings, list(SERVICES), State())
        )

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def close(self) -> None:
        self.run(self._stack.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)

    @property
    def engine(self) -> Any:
        return self.runtime.engine

    def _access(self, role: Role, subject: str, scopes: str, **claims: Any) -> PolicyAccess:
        services: AuditServices = getattr(self.runtime.state, AUDIT_KEY)
        principal = Principal(
            subject=subject,
            issuer=self.settings.public_url or "",
            role=role,
            scopes=parse_scopes(scopes),
            **claims,
        )
        return PolicyAccess(principal, services, "127.0.0.1")

    def professional(self, rpps: str, practitioner: str) -> PolicyAccess:
        return self._access(
            Role.PROFESSIONAL,
            f"rpps-{rpps}",
            "openid fhirUser user/*.cruds",
            fhir_user=f"Practitioner/{practitioner}",
            national_id="8" + rpps,
            sector="health",
        )

    def patient(self, patient: str) -> PolicyAccess:
        return self._access(
            Role.PATIENT,
            f"patient-{patient}",
            "openid fhirUser patient/*.cruds",
            fhir_user=f"Patient/{patient}",
            patient=patient,
        )
