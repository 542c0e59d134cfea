"""`socle import`: the bulk import with a progress bar, a summary and the bad lines' report."""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from ..config import Settings
from ..fhir.json import encode
from .audit import audit_chunk
from .importer import KEPT_BAD_LINES, ImportResult, run_import
from .sources import Source, SourceError

SHOWN_BAD_LINES = 20


def import_command(
    settings: Settings,
    inputs: list[str],
    strict: bool,
    chunk_lines: int,
    processes: int | None,
    report: Path | None,
) -> int:
    """Run the import; returns the exit status (0 all imported, 1 bad lines or stopped, 2 an
    input that cannot be read)."""
    console = Console(stderr=True)
    who = f"{getpass.getuser()} (socle import)"
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lines · {task.fields[counts]}"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:

        def progress(source: Source, read: int, result: ImportResult) -> None:
            task = tasks.get(source.fingerprint + source.name)
            if task is None:
                task = tasks[source.fingerprint + source.name] = bar.add_task(
                    Path(source.name).name, total=source.lines, counts=""
                )
            counts = f"{result.imported:,} imported, {result.rejected:,} rejected"
            bar.update(task, completed=read, counts=counts)

        try:
            result = asyncio.run(
                run_import(
                    settings,
                    inputs,
                    who=who,
                    strict=strict,
                    chunk_lines=chunk_lines,
                    processes=processes,
                    audit=audit_chunk,
                    progress=progress,
                )
            )
        except SourceError as exc:
            console.print(f"[red]Cannot import:[/red] {exc}")
            console.print("Chunks committed before stay; running the command again resumes.")
            return 2
    rate = (result.imported + result.unchanged) / max(result.seconds, 1e-9)
    console.print(
        f"Import {result.id}: {result.status}. {result.imported:,} resources imported, "
        f"{result.unchanged:,} unchanged, {result.rejected:,} bad lines, {result.skipped:,} lines "
        f"already imported by an earlier run; {result.seconds:.1f} s ({rate:,.0f} resources/s)."
    )
    if result.detail:
        console.print(result.detail)
    if result.dangling_count:
        console.print(
            f"{result.dangling_count:,} referenced resources are neither stored nor imported, "
            f"e.g. {', '.join(result.dangling[:5])}"
        )
    for bad in result.bad[:SHOWN_BAD_LINES]:
        issues = "; ".join(
            f"{i.get('diagnostics', '')}"
            + (f" (at {', '.join(i['expression'])})" if i.get("expression") else "")
            for i in bad.outcome.get("issue", [])
        )
        console.print(f"[red]{bad.source}:{bad.line}[/red] {issues}")
    if len(result.bad) > SHOWN_BAD_LINES:
        console.print(f"… and {len(result.bad) - SHOWN_BAD_LINES} more bad lines")
    if len(result.bad) >= KEPT_BAD_LINES:
        console.print(
            f"Only the first {KEPT_BAD_LINES:,} are reported: all are in bulk_import_error"
        )
    if report is not None:
        with report.open("wb") as out:
            for bad in result.bad:
                out.write(
                    encode({"source": bad.source, "line": bad.line, "outcome": bad.outcome}) + b"\n"
                )
        console.print(f"Bad lines' report: {report}")
    return 0 if result.status == "done" and not result.bad else 1
