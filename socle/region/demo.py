"""`socle demo`: Socle on its embedded default with a synthetic region loaded through the API.

The region is sent as FHIR transaction Bundles of PUT entries with deterministic ids; the engine
makes no new version when a resource is unchanged, so running the demo twice duplicates nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..database import release_embedded
from ..fhir.json import encode
from .generate import iter_bundles
from .logins import SCAN, referent_role
from .situations import coordinator_login, load_situations

MARKER = "demo.json"


def _wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("socle serve exited during start-up; see the messages above")
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"socle serve did not become ready within {timeout:.0f} s")


def load_region(fhir: str, patients: int, seed: int, console: Console, token: str) -> int:
    """Send the region's transaction Bundles with the platform operator's ``token``; returns the
    number of resources sent."""
    sent = 0
    headers = {
        "Content-Type": "application/fhir+json",
        "Prefer": "return=minimal",
        "Authorization": f"Bearer {token}",
    }
    with (
        httpx.Client(timeout=300, headers=headers) as client,
        Progress(
            TextColumn("[bold]Loading[/bold] the region through the FHIR API"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("resources"),
            TimeRemainingColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("load", total=None)
        for bundle in iter_bundles(patients, seed):
            r = client.post(fhir, content=encode(bundle))
            if r.status_code != 200:
                raise SystemExit(f"The server refused a bundle ({r.status_code}): {r.text[:2000]}")
            sent += len(bundle["entry"])
            progress.update(task, advance=len(bundle["entry"]), total=None)
        sent += load_situations(client, fhir, patients, seed)  # the DAC's complex situations
    return sent


def put_resource(fhir: str, resource: dict[str, Any], token: str) -> None:
    """Create or update one resource of the demo (a PUT: running twice changes nothing)."""
    r = httpx.put(
        f"{fhir}/{resource['resourceType']}/{resource['id']}",
        content=encode(resource),
        headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"},
        timeout=60,
    )
    if r.status_code not in (200, 201):
        raise SystemExit(
            f"The server refused {resource['resourceType']} ({r.status_code}): {r.text}"
        )


def _operator_token(data_dir: Path) -> str:
    """The platform operator's token, signed with the key `socle serve` made in the data dir."""
    from ..auth.demo_tokens import mint
    from ..config import Settings

    return mint(Settings.as_served(data_dir), "operator", lifetime=3600)


def _register_demo_clients(data_dir: Path, patients: int, seed: int) -> dict[str, Any]:
    """The demo SMART app and backend service of the authorisation server, and the ready-made
    logins (idempotent)."""
    import psycopg

    from ..auth.server.clients import register_demo_clients
    from ..config import Settings
    from ..database import resolve_url
    from .logins import prepare

    settings = Settings.from_env(data_dir)
    with psycopg.connect(resolve_url(settings), autocommit=True) as conn:
        register_demo_clients(conn, settings)
        return prepare(conn, settings, patients, seed)


def _shown(path: Path) -> str:
    """``path`` as the user can type it from here (relative when below the current folder)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def socle_command() -> str:
    """How to run `socle` from this shell: the venv's script (not on PATH unless activated)."""
    script = Path(sys.executable).parent / "socle"
    return _shown(script) if script.exists() else f"{_shown(Path(sys.executable))} -m socle.cli"


def banner(base: str, data_dir: Path, logins: dict[str, Any]) -> str:
    """What `socle demo` prints once ready: where to go and who to log in as."""
    socle = socle_command()
    dd = _shown(data_dir)
    dd_opt = "" if dd == ".socle-data" else f" --data-dir {dd}"

    def token(who: str, scope: str = "") -> str:
        return f"TOKEN=$({socle} token {who}{dd_opt}{scope})"

    lines = [
        "",
        "[bold green]Socle is running[/bold green] with a synthetic region of Corsica.",
        f"  Site            {base}/  (Se connecter: the patient or a professional below)",
        f"  FHIR API        {base}/fhir  (CapabilityStatement: {base}/fhir/metadata)",
        f"  Operator token  {token('operator')}",
        f'  Try             curl -H "Authorization: Bearer $TOKEN" '
        f"'{base}/fhir/Patient?address-city=ajaccio&_count=5'",
        "",
        "[bold]Ready-made logins[/bold] (tokens with the claims of a real login; or log in "
        f"through {base}/auth with the demo SMART app 'socle-demo-app')",
    ]
    if "doctor" in logins:
        d = logins["doctor"]
        lines.append(
            f"  Médecin traitant  {d['name']} (RPPS {d['rpps']}), médecin traitant of "
            f"{d['patients']}{'' if logins['patients'] <= SCAN else '+'} patients"
            f"\n                    {token('practitioner:' + d['rpps'])}"
        )
    if "nurse" in logins:
        n = logins["nurse"]
        lines.append(
            f"  Infirmier(e)      {n['name']} (RPPS {n['rpps']}), in a care team"
            f"\n                    {token('practitioner:' + n['rpps'])}"
        )
    if "coordinator" in logins:
        c = logins["coordinator"]
        lines.append(
            f"  DAC coordinator   {c['name']} (RPPS {c['rpps']}): GET {base}/fhir/$worklist, "
            "Patient/{id}/$lifeline"
            f"\n                    {token('practitioner:' + c['rpps'])}"
        )
    if "hospital" in logins:
        h = logins["hospital"]
        lines.append(
            f"  Hospital system   {h['name']}: client '{h['client']}' (client_credentials, "
            f"private_key_jwt, key {_shown(Path(h['private_key_file']))}); it sees the "
            "directory and the records it writes (the operator loaded the region)"
            f"\n                    {token('system:' + h['client'] + ':' + h['organization'])}"
        )
    if "referent" in logins:
        r = logins["referent"]
        lines.append(
            f"  Identity referent {r['name']} (RPPS {r['rpps']}), scope socle/identitovigilance"
            f"\n                    {token('referent:' + r['rpps'])}"
        )
    if "patient" in logins:
        p = logins["patient"]
        lines.append(
            f"  Patient           {p['name']}: login '{p['login']}', password "
            f"'{p['password']}', TOTP secret {p.get('totp_secret', '?')}"
            f"\n                    {token('patient:' + p['id'])}"
        )
    if "parent" in logins:
        r = logins["parent"]
        who = f"representative:{r['related_person']}:{r['child']}"
        lines.append(
            f"  Parent of a child {r['name']}, the child's legal representative: login "
            f"'{r.get('login', '?')}', password '{r.get('password', '?')}', TOTP secret "
            f"{r.get('totp_secret', '?')} (the patient login)\n                    {token(who)}"
        )
    if "operator" in logins:
        o = logins["operator"]
        lines.append(
            f"  Operator (staff)  login '{o['login']}', password '{o['password']}', TOTP secret "
            f"{o['totp_secret']}: {base}/connexion → « Connexion de l'équipe d'exploitation »"
            f" → {base}/exploitation"
        )
    lines += [
        f"  Professionals   {base}/connexion → Pro Santé Connect (stand-in) → the RPPS above:"
        f" their workspace {base}/pro/patients; the identity referent also gets"
        f" {base}/pro/identitovigilance",
        f"  Health          {base}/healthz  {base}/readyz",
        f"  Data            {data_dir}",
        "Press Ctrl+C to stop.",
    ]
    return "\n".join(lines)


def _analyze(data_dir: Path) -> None:
    """Fresh planner statistics after the bulk load (autovacuum would get there later): with
    stale ones, searches over the new rows can pick nested loops (docs/performance.md)."""
    import psycopg

    from ..config import Settings
    from ..database import resolve_url

    with psycopg.connect(resolve_url(Settings.from_env(data_dir)), autocommit=True) as conn:
        conn.execute("ANALYZE")


def _provision_mailboxes(data_dir: Path, console: Console) -> None:
    """Secure-messaging mailboxes for the region's professionals and qualified patients
    (docs/messaging.md), idempotent."""
    import psycopg

    from ..config import Settings, mail_domain
    from ..database import resolve_url
    from ..messaging.provision import provision

    with psycopg.connect(resolve_url(Settings.from_env(data_dir)), autocommit=True) as conn:
        counts = provision(conn, mail_domain())
    console.print(
        f"Mailboxes: {counts['PER']:,} professionals, {counts['PAT']:,} patients "
        f"(@{mail_domain()})."
    )


def demo_command(host: str, port: int, data_dir: Path, patients: int, seed: int) -> None:
    console = Console(stderr=True)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    marker = data_dir / MARKER
    env = {**os.environ, "SOCLE_DATA_DIR": str(data_dir)}
    # SIGTERM stops the demo as Ctrl+C does (the default action would skip the cleanup below and
    # leave the server, its workers and the embedded PostgreSQL running). SIGINT explicitly too:
    # a shell starts background jobs with SIGINT ignored, and Python keeps it so.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "socle.cli",
            "serve",
            "--host",
            host,
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
    )
    wildcard = host in ("0.0.0.0", "::")  # noqa: S104 - a comparison, not a bind
    base = f"http://{'127.0.0.1' if wildcard else host}:{port}"
    try:
        _wait_ready(base, process)
        wanted = {"patients": patients, "seed": seed}
        previous = json.loads(marker.read_text()) if marker.exists() else None
        if previous == {**wanted, "loaded": True}:
            console.print(f"Region already loaded ({patients} patients, seed {seed}): skipping.")
        else:
            started = time.perf_counter()
            sent = load_region(base + "/fhir", patients, seed, console, _operator_token(data_dir))
            marker.write_text(json.dumps({**wanted, "loaded": True}))
            took = time.perf_counter() - started
            console.print(f"Loaded {sent:,} resources in {took:.1f} s ({sent / took:,.0f}/s).")
            _analyze(data_dir)
        logins = _register_demo_clients(data_dir, patients, seed)
        _provision_mailboxes(data_dir, console)
        logins["coordinator"] = coordinator_login(seed)
        if "referent" in logins:
            put_resource(
                base + "/fhir", referent_role(logins["referent"]), _operator_token(data_dir)
            )
        console.print(banner(base, data_dir, logins), soft_wrap=True, highlight=False)
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl+C must not abandon the shutdown half-way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Our own hold on the embedded PostgreSQL (clients, ANALYZE): the last holder stops it.
        release_embedded(data_dir)
        console.print("Socle stopped.")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
