"""`socle client add / list / remove` against the server's database."""

from __future__ import annotations

import json
import subprocess

from socle.testing import ServerProcess, run_socle


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_socle(server.database, "client", *args, "--data-dir", str(server.database.data_dir))


def test_client_add_list_remove(server: ServerProcess) -> None:
    added = _cli(
        server,
        "add",
        "--id",
        "cli-listed-app",
        "--redirect-uri",
        "https://app.example.fr/callback",
        "--scope",
        "openid patient/*.rs",
    )
    assert added.returncode == 0, added.stderr
    table = _cli(server, "list")
    assert table.returncode == 0, table.stderr
    line = next(x for x in table.stdout.splitlines() if x.startswith("cli-listed-app "))
    assert "public" in line and "https://app.example.fr/callback" in line
    listed = [json.loads(x) for x in _cli(server, "list", "--json").stdout.splitlines()]
    mine = next(c for c in listed if c["client_id"] == "cli-listed-app")
    assert mine["auth_method"] == "none" and mine["scopes"] == "openid patient/*.rs"
    removed = _cli(server, "remove", "cli-listed-app")
    assert removed.returncode == 0, removed.stderr
    after = [json.loads(x)["client_id"] for x in _cli(server, "list", "--json").stdout.splitlines()]
    assert "cli-listed-app" not in after
    again = _cli(server, "remove", "cli-listed-app")
    assert again.returncode == 2 and "No client 'cli-listed-app'" in again.stderr
