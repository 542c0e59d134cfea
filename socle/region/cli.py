"""`socle generate`: writes the synthetic region, with a progress bar on stderr."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .generate import iter_blocks
from .writer import write_region


def generate_command(patients: int, seed: int, out: Path, bundle_size: int = 100) -> None:
    console = Console(stderr=True)
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]Generating[/bold] region (Corse)"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("patients"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("patients", total=patients)

        def advance(n: int) -> None:
            if n:  # block 0 is the structures
                progress.advance(task)

        writer = write_region(iter_blocks(patients, seed), out, bundle_size, advance)
    elapsed = time.perf_counter() - started
    console.print(
        f"{writer.resources:,} resources ({patients:,} patients) in {elapsed:.1f} s "
        f"({writer.resources / max(elapsed, 1e-9):,.0f}/s): {writer.bundles:,} bundles, "
        f"NDJSON by type in {out / 'ndjson'}"
    )
