"""The `longread` command line: parses arguments, calls the assistant, prints.

Thin on purpose: every verb is a method of `engine.assistant.Assistant`; this module only
turns its data and events into text, tables, JSON and progress bars. Heavy modules are
imported inside commands so that `longread --help` starts fast.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from engine.assistant import Assistant
    from ingest.pipeline import FileOutcome
    from ingest.types import Document

cli = typer.Typer(
    name="longread",
    help="Ask questions about your books and PDFs, offline, with a local GGUF model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_cli = typer.Typer(help="Benchmarks that print figures measured side by side.")
cli.add_typer(bench_cli, name="bench")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Data dir (library, indexes, caches). Default: $LONGREAD_HOME or the user data dir.",
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file. Default: <home>/config.toml.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DocArgument = Annotated[str, typer.Argument(help="An id prefix or part of a title.")]


@cli.callback()
def main(ctx: typer.Context, home: HomeOption = None, config: ConfigOption = None) -> None:
    ctx.obj = {"home": home, "config": config}


@contextmanager
def assistant(ctx: typer.Context, **overrides: dict[str, Any]) -> Iterator[Assistant]:
    """An assistant for this command; user errors become one red line and exit status 1."""
    from engine.assistant import Assistant
    from engine.config import load_settings
    from engine.errors import USER_ERRORS

    try:
        settings = load_settings(
            config_path=ctx.obj["config"], home=ctx.obj["home"], overrides=overrides
        )
        with Assistant(settings) as instance:
            yield instance
    except USER_ERRORS as error:
        err.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(1) from error


class _RateColumn(ProgressColumn):
    """Units per second of the current stage: pages/s while reading, chunks/s after."""

    def render(self, task: Task) -> Text:
        unit = str(task.fields.get("unit", ""))
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f} {unit}/s" if speed else "", style="cyan")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.fields[name]}[/bold]"),
        TextColumn("{task.fields[stage]:<9}", style="magenta"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


@cli.command()
def add(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Books and PDFs to add.")],
    password: Annotated[
        str | None, typer.Option("--password", help="Password of encrypted PDFs.")
    ] = None,
) -> None:
    """Add books and PDFs (PDF, EPUB, text, Markdown, HTML) to the library."""
    from ingest.pipeline import AddStatus, FileOutcome

    failures = 0
    with assistant(ctx) as longread, _progress() as progress:
        tasks: dict[tuple[Path, str], TaskID] = {}
        for event in longread.add(paths, password=password):
            if isinstance(event, FileOutcome):
                for key in [k for k in tasks if k[0] == event.path]:
                    progress.remove_task(tasks.pop(key))
                progress.console.print(_outcome_line(event), highlight=False)
                failures += event.status is AddStatus.FAILED
                continue
            key = (event.path, event.stage.value)
            if key not in tasks:
                for old in [k for k in tasks if k[0] == event.path]:
                    progress.remove_task(tasks.pop(old))
                tasks[key] = progress.add_task(
                    "",
                    total=event.total,
                    name=event.path.name,
                    stage=event.stage.value,
                    unit=event.unit,
                )
            progress.update(tasks[key], completed=event.done, total=event.total)
    if failures:
        err.print(f"[red]{failures} of {len(paths)} files could not be added[/red]")
        raise typer.Exit(1)


def _outcome_line(outcome: FileOutcome) -> str:
    from ingest.pipeline import AddStatus

    if outcome.status is AddStatus.FAILED:
        return f"[red]✗[/red] {outcome.path.name}: {outcome.error}"
    document = outcome.document
    assert document is not None
    if outcome.status is AddStatus.ALREADY_PRESENT:
        return (
            f"[yellow]=[/yellow] {outcome.path.name}: already in the library"
            f" as {document.title!r} ({document.id[:12]})"
        )
    pages = f"{document.page_count} pages, " if document.page_count else ""
    return (
        f"[green]✓[/green] {document.title} ({document.id[:12]}): {pages}"
        f"{document.token_count:,} tokens, {document.chunk_count} chunks, {outcome.seconds:.1f} s"
    )


def _document_json(document: Document) -> dict[str, Any]:
    return {
        "id": document.id,
        "title": document.title,
        "format": document.format.value,
        "pages": document.page_count,
        "tokens": document.token_count,
        "chunks": document.chunk_count,
        "source": document.source_path,
        "added": document.added_at.isoformat(),
    }


@cli.command("list")
def list_documents(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the documents in the library."""
    with assistant(ctx) as longread:
        documents = longread.documents()
    if as_json:
        out.print_json(json.dumps([_document_json(d) for d in documents]))
        return
    if not documents:
        out.print("The library is empty. Add files with `longread add PATH...`.")
        return
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("title", ratio=1)
    for column in ("format", "pages", "tokens", "chunks", "added"):
        table.add_column(column, no_wrap=True, justify="left" if column == "format" else "right")
    for d in documents:
        table.add_row(
            d.id[:12],
            d.title,
            d.format.value,
            str(d.page_count or "-"),
            f"{d.token_count:,}",
            str(d.chunk_count),
            d.added_at.strftime("%Y-%m-%d"),
        )
    out.print(table)


@cli.command()
def show(ctx: typer.Context, doc: DocArgument, as_json: JsonOption = False) -> None:
    """Show a document's outline: its sections with their locations."""
    with assistant(ctx) as longread:
        document, sections = longread.outline(doc)
    if as_json:
        payload = _document_json(document) | {
            "sections": [
                {
                    "label": s.label,
                    "kind": s.kind.value,
                    "level": s.level,
                    "start": s.start,
                    "end": s.end,
                }
                for s in sections
            ]
        }
        out.print_json(json.dumps(payload))
        return
    out.print(
        f"[bold]{document.title}[/bold]  {document.id[:12]}  {document.format.value}",
        highlight=False,
    )
    out.print(f"{document.source_path}", highlight=False)
    pages = f"{document.page_count} pages, " if document.page_count else ""
    out.print(f"{pages}{document.token_count:,} tokens, {document.chunk_count} chunks\n")
    for section in sections:
        indent = "  " * (section.level - 1)
        size = section.end - section.start
        out.print(f"{indent}{section.citation()}  [dim]{size:,} chars[/dim]", highlight=False)


@cli.command()
def remove(ctx: typer.Context, doc: DocArgument) -> None:
    """Remove a document from the library."""
    with assistant(ctx) as longread:
        document = longread.remove(doc)
    out.print(f"removed {document.title!r} ({document.id[:12]})", highlight=False)


@bench_cli.command("ingest")
def bench_ingest(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A PDF. Default: the 234-page Pride and Prejudice PDF in ../shared/corpus."
        ),
    ] = None,
    runs: Annotated[int, typer.Option(help="Repetitions; the best is reported.")] = 1,
) -> None:
    """Ingest throughput: pages/s reading, chunks/s chunking, and the whole pipeline."""
    from engine.bench.ingest import DEFAULT_BENCH_PDF, run_ingest_benchmark

    target = path or DEFAULT_BENCH_PDF
    if not target.is_file():
        err.print(f"[red]error:[/red] {target} not found; pass a PDF to benchmark")
        raise typer.Exit(1)
    err.print(f"benchmarking ingestion of {target} ...")
    started = time.perf_counter()
    result = run_ingest_benchmark(target, runs=runs)
    out.print(result.report(), highlight=False)
    err.print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    sys.exit(cli())
