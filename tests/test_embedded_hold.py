"""A service runtime in a process that holds the embedded PostgreSQL already (a test's, beside
its servers, as `tests/messaging/engine_world.py` runs one) leaves that hold as it found it.
pgserver stops the server when the last holder lets go: a test process whose hold the runtime
let go saw its session database stop with the session's server, before the fixtures still
using it were torn down (the web site's database could not be dropped)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path

from starlette.datastructures import State

from socle.config import Settings
from socle.database import embedded_url, holds_embedded
from socle.server import service_runtime
from socle.services import SERVICES
from socle.testing import fresh_database


def _holders(data_dir: Path) -> list[int]:
    return json.loads((data_dir / "pg").resolve().joinpath(".handle_pids.json").read_text())


def test_a_runtime_leaves_the_hold_of_the_process_it_runs_in() -> None:
    with fresh_database(None) as db:
        embedded_url(db.data_dir)  # held by this process, as a test's beside its servers
        assert os.getpid() in _holders(db.data_dir)
        settings = dataclasses.replace(Settings.from_env(db.data_dir), database_url=None)

        async def run() -> None:
            async with service_runtime(settings, list(SERVICES), State()) as runtime:
                assert runtime.engine is not None

        asyncio.run(run())
        assert holds_embedded(db.data_dir)
        assert os.getpid() in _holders(db.data_dir)


def test_a_runtime_lets_go_the_hold_it_took() -> None:
    with fresh_database(None) as db:
        settings = dataclasses.replace(Settings.from_env(db.data_dir), database_url=None)

        async def run() -> None:
            async with service_runtime(settings, list(SERVICES), State()):
                assert os.getpid() in _holders(db.data_dir)

        asyncio.run(run())
        assert not holds_embedded(db.data_dir)
        assert os.getpid() not in _holders(db.data_dir)
