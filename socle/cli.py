"""The `socle` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Socle, the regional e-health platform."
)

PUBLIC_URL_FILE = "public-url"

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="SOCLE_DATA_DIR", help="Where the embedded database lives."),
]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    data_dir: DataDir = None,
    workers: Annotated[
        int | None,
        typer.Option(
            envvar="SOCLE_WORKERS", help="Worker processes (default: one per core, max 4)."
        ),
    ] = None,
) -> None:
    """Run the HTTP server (FHIR base at /fhir)."""
    import os

    from .server import run

    run(host=host, port=port, data_dir=data_dir, workers=workers or min(os.cpu_count() or 1, 4))


@app.command()
def generate(
    patients: Annotated[int, typer.Option(help="How many patients.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same region.")] = 1,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("out/region"),
) -> None:
    """Generate a synthetic French region as FHIR NDJSON and transaction Bundles."""
    from .region.cli import generate_command

    generate_command(patients=patients, seed=seed, out=out)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    data_dir: DataDir = None,
    patients: Annotated[int, typer.Option(help="Patients of the synthetic region.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic region.")] = 1,
) -> None:
    """Run Socle with a synthetic region loaded through the FHIR API (idempotent)."""
    from .region.demo import demo_command

    demo_command(host, port, data_dir or Path(".socle-data"), patients, seed)


def _settings_for(data_dir: Path | None) -> Any:
    import os

    from .config import Settings

    if data_dir is not None:
        os.environ["SOCLE_DATA_DIR"] = str(data_dir)
    settings = Settings.from_env()
    served = settings.data_dir / PUBLIC_URL_FILE
    if not os.environ.get("SOCLE_PUBLIC_URL") and served.exists():
        # the URL the last `socle serve` on this data dir announced: its tokens' audience
        os.environ["SOCLE_PUBLIC_URL"] = served.read_text().strip()
        settings = Settings.from_env()
    return settings


@app.command()
def token(
    principal: Annotated[
        str,
        typer.Argument(
            help="operator, admin, ars, practitioner:<RPPS>, patient:<id>, "
            "representative:<RelatedPerson id>:<patient id>, system:<client id>:<Organization id>"
        ),
    ],
    scope: Annotated[str | None, typer.Option(help="Scopes (default: the role's).")] = None,
    lifetime: Annotated[int, typer.Option(help="Seconds of validity.")] = 3600,
    data_dir: DataDir = None,
) -> None:
    """Print an access token for a demo principal (demo data dirs only)."""
    from .auth.demo_tokens import UnknownPrincipal, mint
    from .region.demo import MARKER

    settings = _settings_for(data_dir)
    if not (settings.data_dir / MARKER).exists():
        typer.echo(
            f"{settings.data_dir} is not a demo data dir: `socle token` only serves demos. "
            "Use the authorisation server (docs/security.md).",
            err=True,
        )
        raise typer.Exit(2)
    try:
        typer.echo(mint(settings, principal, scope=scope, lifetime=lifetime))
    except UnknownPrincipal as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


audit_app = typer.Typer(no_args_is_help=True, help="The audit trail.")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDir = None,
    seal_first: Annotated[
        bool, typer.Option("--seal/--no-seal", help="Chain pending events before verifying.")
    ] = True,
) -> None:
    """Verify the audit hash chain: every altered, removed, inserted or reordered record."""
    import asyncio

    import psycopg

    from .auth.audit_store import seal, verify
    from .database import resolve_url

    settings = _settings_for(data_dir)

    async def run() -> Any:
        async with await psycopg.AsyncConnection.connect(
            resolve_url(settings), autocommit=True
        ) as conn:
            if seal_first:
                await seal(conn, settings.data_dir)
            return await verify(conn, settings.data_dir)

    result = asyncio.run(run())
    typer.echo(
        f"{result.records} records chained (head seq {result.head[0]}), "
        f"{result.unsealed} not yet chained"
    )
    for problem in result.problems:
        typer.echo(f"PROBLEM: {problem}")
    if not result.ok:
        typer.echo(f"The audit trail has been tampered with: {len(result.problems)} problem(s)")
        raise typer.Exit(1)
    typer.echo("The audit trail is intact.")


if __name__ == "__main__":
    app()
