"""The `socle` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Socle, the regional e-health platform."
)

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


if __name__ == "__main__":
    app()
