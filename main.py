"""The `longread` command line: parses arguments, calls the assistant, prints.

Thin on purpose: every verb is a method of `engine.assistant.Assistant`; this module only
turns its data and events into text, tables, JSON and progress bars. Heavy modules are
imported inside commands so that `longread --help` starts fast.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

# OpenMP threads that spin while waiting (the default) starve each other when torch and
# llama.cpp share the cores with anything else: measured here under load, llama.cpp prefill
# ran 55-136 tokens/s spinning and 217-225 sleeping, and one query embedding took 730 ms
# against 15 ms. Set before torch or llama.cpp load OpenMP; a person's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer
from rich.console import Console
from rich.markup import escape
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

# Light modules (enums and dataclasses, no heavy imports): typer lists their choices.
from engine.types import KVCacheType, PromptLayout, Strategy
from retrieval.types import SearchMode

if TYPE_CHECKING:
    import threading

    from engine.assistant import Assistant
    from engine.batch import BatchQuestion
    from engine.strategies.beacon_build import BeaconProgress
    from engine.types import Answer, AnswerEvent, Preparing, Route
    from ingest.pipeline import FileOutcome
    from models.catalog import ModelEntry
    from models.types import ModelProfile

cli = typer.Typer(
    name="longread",
    help="Ask questions about your books and PDFs, offline, with a local GGUF model.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_cli = typer.Typer(help="Benchmarks that print figures measured side by side.")
cli.add_typer(bench_cli, name="bench")
models_cli = typer.Typer(help="The GGUF models longread can answer with.")
cli.add_typer(models_cli, name="models")
cache_cli = typer.Typer(help="Saved KV states of prefilled documents.")
cli.add_typer(cache_cli, name="cache")

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
ModelOption = Annotated[
    str | None,
    typer.Option("--model", "-m", help="A model name from `longread models`, or a .gguf path."),
]
LayoutOption = Annotated[
    PromptLayout | None,
    typer.Option(
        "--layout",
        help="cached (document first: follow-ups reuse its KV) or query-aware (question before"
        " and after the document). Default: the plan's recommendation.",
    ),
]
KVTypeOption = Annotated[
    KVCacheType | None,
    typer.Option(
        "--kv-type",
        help="KV cache element type. Default: f16, quantized only when memory is short.",
    ),
]
GpuLayersOption = Annotated[
    int | None,
    typer.Option(
        "--gpu-layers",
        min=0,
        help="Layers to offload to the GPU. Default: all that fit (none on a CPU build).",
    ),
]


class Mode(StrEnum):
    """What `--mode` takes: a strategy, or auto to let the router choose."""

    AUTO = "auto"
    LONG = Strategy.LONG_CONTEXT.value
    BEACONS = Strategy.BEACONS.value
    RAG = Strategy.RAG.value


ModeOption = Annotated[
    Mode | None,
    typer.Option(
        "--mode",
        help="auto: the router chooses per question; long: the whole document in the model's"
        " context; beacons: chunk summaries; rag: the passages search finds."
        " Default: [router] strategy in the config (auto).",
    ),
]


@cli.callback(invoke_without_command=True)
def main(ctx: typer.Context, home: HomeOption = None, config: ConfigOption = None) -> None:
    # Everything longread writes (the library with the full text of a person's books,
    # indexes, KV states, the model catalogue, the config) is private to its owner: files
    # 0600, folders 0700. Set first, before any command writes anything.
    os.umask(0o077)
    ctx.obj = {"home": home, "config": config}
    if ctx.invoked_subcommand is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            # Not a terminal (a pipe, a script): there is no screen for the TUI to draw on.
            out.print(ctx.get_help(), highlight=False, markup=False)
            return
        tui(ctx)


@cli.command()
def tui(ctx: typer.Context) -> None:
    """Open the terminal UI (what `longread` with no command does)."""
    from engine.config import load_settings
    from engine.errors import USER_ERRORS

    try:
        settings = load_settings(config_path=ctx.obj["config"], home=ctx.obj["home"])
        from app.app import run_tui  # Textual loads only for the TUI

        run_tui(settings)
    except USER_ERRORS as error:
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from error


def _print_json(value: Any) -> None:
    """Any of longread's types (or plain data holding them) as JSON on stdout."""
    from engine.serialize import to_jsonable

    out.print_json(json.dumps(to_jsonable(value)))


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
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
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
        # Off a terminal (a pipe, a log) a bar shows nothing, and stopping it wrote a blank
        # line before whatever came next: an error would no longer be one line.
        disable=not err.is_terminal,
    )


@cli.command()
def add(
    ctx: typer.Context,
    # readable=False: typer's check would reject the whole command for one unreadable
    # file; each file's own outcome says so instead, and the others are still added.
    paths: Annotated[list[Path], typer.Argument(help="Books and PDFs to add.", readable=False)],
    password: Annotated[
        str | None, typer.Option("--password", help="Password of encrypted PDFs.")
    ] = None,
) -> None:
    """Add books and PDFs (PDF, EPUB, text, Markdown, HTML) to the library."""
    from ingest.pipeline import AddStatus, FileOutcome
    from retrieval.embedders import EXPORT_PROGRESS_UNIT

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
            # A stage may change its unit (the embedder's one-time export, then chunks).
            key = (event.path, f"{event.stage.value} {event.unit}")
            if key not in tasks and event.unit == EXPORT_PROGRESS_UNIT:
                progress.console.print(
                    "[dim]preparing the embedder: exporting it to ONNX, once (about 10 s)[/dim]",
                    highlight=False,
                )
            if key not in tasks:
                for old in [k for k in tasks if k[0] == event.path]:
                    progress.remove_task(tasks.pop(old))
                tasks[key] = progress.add_task(
                    "",
                    total=event.total,
                    name=escape(event.path.name),
                    stage=event.stage.value,
                    unit=event.unit,
                )
            progress.update(tasks[key], completed=event.done, total=event.total)
    if failures:
        err.print(f"[red]{failures} of {len(paths)} files could not be added[/red]")
        raise typer.Exit(1)


def _outcome_line(outcome: FileOutcome) -> str:
    """How adding one file went, as rich markup; names, titles and messages escaped."""
    from ingest.pipeline import AddStatus

    name = escape(outcome.path.name)
    if outcome.status is AddStatus.FAILED:
        return f"[red]✗[/red] {name}: {escape(str(outcome.error))}"
    document = outcome.document
    assert document is not None
    if outcome.status is AddStatus.ALREADY_PRESENT:
        return (
            f"[yellow]=[/yellow] {name}: already in the library"
            f" as {escape(repr(document.title))} ({document.id[:12]})"
        )
    pages = f"{document.page_count} pages, " if document.page_count else ""
    line = (
        f"[green]✓[/green] {escape(document.title)} ({document.id[:12]}): {pages}"
        f"{document.token_count:,} tokens, {document.chunk_count} chunks, {outcome.seconds:.1f} s"
    )
    if outcome.warning:
        line += f"\n  [yellow]warning:[/yellow] {escape(outcome.warning)}"
    return line


@cli.command("list")
def list_documents(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the documents in the library."""
    with assistant(ctx) as longread:
        documents = longread.documents()
    if as_json:
        _print_json(documents)
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
            Text(d.title),  # Text: a title is shown as written, never read as markup
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
        _print_json({"document": document, "sections": sections})
        return
    out.print(
        f"[bold]{escape(document.title)}[/bold]  {document.id[:12]}  {document.format.value}",
        highlight=False,
    )
    out.print(str(document.source_path), highlight=False, markup=False)
    pages = f"{document.page_count} pages, " if document.page_count else ""
    out.print(f"{pages}{document.token_count:,} tokens, {document.chunk_count} chunks\n")
    for section in sections:
        indent = "  " * (section.level - 1)
        size = section.end - section.start
        out.print(
            f"{indent}{escape(section.citation())}  [dim]{size:,} chars[/dim]", highlight=False
        )


@cli.command()
def remove(ctx: typer.Context, doc: DocArgument) -> None:
    """Remove a document from the library."""
    with assistant(ctx) as longread:
        document = longread.remove(doc)
    out.print(f"removed {document.title!r} ({document.id[:12]})", highlight=False, markup=False)


@cli.command()
def repair(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Rebuild a damaged library, keeping every document that can still be read."""
    from engine.config import load_settings
    from engine.errors import USER_ERRORS
    from ingest.repair import repair_library  # needs no assistant: it must open no library

    try:
        settings = load_settings(config_path=ctx.obj["config"], home=ctx.obj["home"])
        report = repair_library(settings.home)
    except USER_ERRORS as error:
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from error
    if as_json:
        _print_json(report)
    else:
        for line in report.lines():
            out.print(line, highlight=False, markup=False)
    if report.lost:  # the person has files to add again: a script should notice
        raise typer.Exit(1)


ALL_DOCUMENTS = "all"


def _index_with_progress(longread: Assistant, document_ids: list[str], rebuild: bool) -> None:
    """Build missing, stale (or, with `rebuild`, all) indexes with a progress bar each."""
    titles = {d.id: d.title for d in longread.documents()}
    with _progress() as progress:
        tasks: dict[str, TaskID] = {}
        for step in longread.prepare_indexes(document_ids, rebuild=rebuild):
            title = titles.get(step.document_id, step.document_id[:12])
            if step.reason:
                progress.console.print(
                    f"indexing {title}: {step.reason}", highlight=False, markup=False
                )
            if step.document_id not in tasks:
                tasks[step.document_id] = progress.add_task(
                    "", total=step.total, name=escape(title[:40]), stage="embedding", unit="chunks"
                )
            progress.update(tasks[step.document_id], completed=step.done, total=step.total)


def _snippet(text: str, query_terms: list[str], width: int = 220) -> Text:
    """The part of a chunk where the query's words cluster, with those words highlighted."""
    lowered = text.lower()
    positions = [p for term in query_terms if (p := lowered.find(term)) >= 0]
    center = min(positions) if positions else 0
    start = max(0, center - width // 3)
    piece = " ".join(text[start : start + width].split())
    snippet = Text(("…" if start else "") + piece + ("…" if start + width < len(text) else ""))
    snippet.highlight_words(query_terms, style="bold yellow", case_sensitive=False)
    return snippet


@cli.command()
def search(
    ctx: typer.Context,
    doc: Annotated[
        str,
        typer.Argument(
            help=f"An id prefix or part of a title; {ALL_DOCUMENTS!r}: the whole library."
        ),
    ],
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", min=1, help="How many chunks to show.")] = 5,
    mode: Annotated[SearchMode, typer.Option("--mode")] = SearchMode.HYBRID,
    as_json: JsonOption = False,
) -> None:
    """Search a document (or the whole library) and print the best chunks with their locations."""
    from retrieval.text_tokens import terms

    with assistant(ctx) as longread:
        ids = longread.document_ids([] if doc == ALL_DOCUMENTS else [doc])
        _index_with_progress(longread, ids, rebuild=False)
        hits = longread.search(query, ids, k=k, mode=mode)
        titles = {d.id: d.title for d in longread.documents()}
    if as_json:
        _print_json([{"title": titles.get(hit.document_id), "hit": hit} for hit in hits])
        return
    if not hits:
        out.print("No matching passages.")
        return
    query_terms = terms(query)
    several = len(ids) > 1
    for hit in hits:
        where = (
            f"{titles.get(hit.document_id, '')}, {hit.chunk.location}"
            if several
            else hit.chunk.location
        )
        out.print(
            f"[bold]{hit.rank}.[/bold] [cyan]{escape(where)}[/cyan]"
            f"  [dim]score {hit.score:.4f}[/dim]",
            highlight=False,
        )
        out.print(_snippet(hit.chunk.text, query_terms))
        out.print()


@cli.command()
def reindex(
    ctx: typer.Context,
    doc: Annotated[
        str | None, typer.Argument(help="One document; default: the whole library.")
    ] = None,
) -> None:
    """Rebuild search indexes (embeddings are reused from the cache where chunks are unchanged)."""
    with assistant(ctx) as longread:
        ids = longread.document_ids([doc] if doc else [])
        _index_with_progress(longread, ids, rebuild=True)
    out.print(f"reindexed {len(ids)} document{'s' if len(ids) != 1 else ''}")


class _SecondsLeftColumn(ProgressColumn):
    """Tokens read and written per second, and the time left at this run's pace."""

    def render(self, task: Task) -> Text:
        from engine.planner import format_seconds

        rate = float(task.fields.get("tokens_per_second", 0.0))
        left = task.fields.get("seconds_left")
        parts = [f"{rate:,.0f} tokens/s" if rate else ""]
        parts.append(f"{format_seconds(float(left))} left" if left is not None else "")
        return Text("  ".join(p for p in parts if p), style="cyan")


def _beacon_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.fields[name]}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("windows"),
        _SecondsLeftColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        # Off a terminal (a pipe, a log) a bar shows nothing, and stopping it wrote a blank
        # line before whatever came next: an error would no longer be one line.
        disable=not err.is_terminal,
    )


@cli.command()
def summarize(
    ctx: typer.Context,
    doc: DocArgument,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Forget the stored beacons and write them anew.")
    ] = False,
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build a document's beacon summaries ahead of questions; a stopped build resumes."""
    import threading

    from engine.generators import run_to_end
    from engine.planner import format_seconds
    from engine.types import Preparing, PrepStage

    cancel = threading.Event()
    started = time.monotonic()
    last: BeaconProgress | None = None
    with assistant(ctx) as longread:
        document = longread.resolve(doc)
        events = longread.summarize(document.id, model=model, rebuild=rebuild, cancel=cancel)
        with _beacon_progress() as progress:
            bar = progress.add_task(
                "",
                total=None,
                name=escape(document.title[:40]),
                tokens_per_second=0.0,
                seconds_left=None,
            )

            def show(event: BeaconProgress | Preparing) -> None:
                nonlocal last
                if isinstance(event, Preparing):
                    if event.stage is PrepStage.MODEL and event.done == 0:
                        progress.console.print(
                            f"[dim]loading {escape(event.detail)} to write beacons[/dim]",
                            highlight=False,
                        )
                    return  # a model load cannot count its progress
                last = event
                progress.update(
                    bar,
                    completed=event.done,
                    total=event.total,
                    tokens_per_second=event.tokens_per_second,
                    seconds_left=event.seconds_left,
                )

            try:
                with _ctrl_c_sets(cancel):
                    outcome = run_to_end(events, show)
            except KeyboardInterrupt:  # a second Ctrl-C: stop now, mid-window
                events.close()
                err.print(f"[yellow]{_stopped_line(last)}[/yellow]", highlight=False)
                raise typer.Exit(130) from None
        if outcome.cancelled:
            err.print(f"[yellow]{_stopped_line(last)}[/yellow]", highlight=False)
            raise typer.Exit(130)
    layout = outcome.layout
    if as_json:
        _print_json(
            {
                "document": document.id,
                "title": document.title,
                "ratio": layout.choice.ratio,
                "window_tokens": layout.window_tokens,
                "built": outcome.built,
                "reused": outcome.reused,
                "beacons": [
                    {
                        "ordinal": b.ordinal,
                        "start": b.start,
                        "end": b.end,
                        "location": b.location,
                        "text": b.text,
                    }
                    for b in outcome.beacons
                ],
            }
        )
        return
    windows = len(layout.windows)
    out.print(
        f"Built {outcome.built} beacon{'s' if outcome.built != 1 else ''},"
        f" reused {outcome.reused} ({windows:,} window{'s' if windows != 1 else ''}"
        f" of {layout.window_tokens:,} tokens, ratio ×{layout.choice.ratio})"
        f" in {format_seconds(time.monotonic() - started)}",
        highlight=False,
        markup=False,
    )


@contextmanager
def _ctrl_c_sets(cancel: threading.Event) -> Iterator[None]:
    """Inside the block, a first Ctrl-C sets `cancel` and a second raises KeyboardInterrupt.

    Relying on KeyboardInterrupt alone loses some: Python raises it wherever the main thread
    is, and one raised inside a finalizer or a ctypes callback (llama.cpp's, while a model
    loads) is printed and dropped; a build then ran to its end after Ctrl-C. Setting the
    event is never lost, and the build stops within the window being read.
    """

    def stop(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stopped_line(last: BeaconProgress | None) -> str:
    """What a stopped build left behind, from its last progress."""
    resume = "run the same command again to resume"
    if last is None:
        return f"stopped before building began; beacons stored before are kept; {resume}"
    return f"stopped: {last.done} of {last.total} beacons stored; {resume}"


def _strategy_flag(mode: Mode | None) -> dict[str, Any]:
    return {"strategy": mode.value if mode is not None else None}


def _context_flags(kv_type: KVCacheType | None, gpu_layers: int | None) -> dict[str, Any]:
    """`--kv-type` and `--gpu-layers` as overrides of the [context] settings."""
    return {"kv_type": kv_type.value if kv_type else None, "gpu_layers": gpu_layers}


@cli.command()
def plan(
    ctx: typer.Context,
    doc: DocArgument,
    model: ModelOption = None,
    layout: LayoutOption = None,
    kv_type: KVTypeOption = None,
    gpu_layers: GpuLayersOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show how a whole document would run on a model: window, scaling, KV cache, prefill."""
    from engine.planner import describe

    with assistant(ctx, context=_context_flags(kv_type, gpu_layers)) as longread:
        planned = longread.plan(longread.resolve(doc).id, model=model, layout=layout)
    if as_json:
        _print_json({"model": planned.model.name, "plan": planned.plan})
        return
    document = planned.document
    out.print(
        f"[bold]{escape(document.title)}[/bold]: {planned.document_tokens:,} tokens"
        f" on {escape(planned.model.name)}"
        f" ({planned.profile.context_length:,}-token trained window)",
        highlight=False,
    )
    for line in describe(planned.plan):
        out.print(f"  {line}", highlight=False, markup=False)


def _route_line(route: Route) -> str:
    return f"route:     {route.reason}"


@cli.command()
def ask(
    ctx: typer.Context,
    doc: DocArgument,
    question: Annotated[str, typer.Argument(help="The question.")],
    mode: ModeOption = None,
    model: ModelOption = None,
    layout: LayoutOption = None,
    kv_type: KVTypeOption = None,
    gpu_layers: GpuLayersOption = None,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="Print the route the question would take; load no model."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ask a question about a document; the router picks how to read it, the answer streams."""
    import threading

    cancel = threading.Event()
    flags = {"context": _context_flags(kv_type, gpu_layers), "router": _strategy_flag(mode)}
    with assistant(ctx, **flags) as longread:
        strategy = longread.settings.router.forced_strategy
        document_id = longread.resolve(doc).id
        if explain:
            route = longread.route(
                document_id, question, strategy=strategy, model=model, layout=layout
            )
            if as_json:
                _print_json(route)
            else:
                out.print(_route_line(route), highlight=False, markup=False)
            return
        events = longread.ask(
            document_id,
            question,
            strategy=strategy,
            model=model,
            layout=layout,
            cancel=cancel,
        )
        try:
            with _ctrl_c_sets(cancel):  # the answer, or a beacon build, stops within a moment
                _show_answer_events(events, as_json)
        except KeyboardInterrupt:  # a second Ctrl-C: stop now
            events.close()
            err.print("\n[yellow]cancelled[/yellow]")
            raise typer.Exit(130) from None
        if cancel.is_set():
            err.print("\n[yellow]cancelled[/yellow]")
            raise typer.Exit(130)


def _show_answer_events(events: Iterator[AnswerEvent], as_json: bool) -> None:
    """Stream an answer's events to the terminal (progress on stderr, the answer on stdout),
    or with `as_json` print only the finished answer."""
    from engine.planner import describe
    from engine.types import (
        AnswerDone,
        AnswerToken,
        Escalated,
        PlanChosen,
        Preparing,
        PrepStage,
        RouteChosen,
    )

    route: Route | None = None
    with _progress() as progress:
        bars: dict[PrepStage, TaskID] = {}
        for event in events:
            if isinstance(event, Preparing):
                if event.stage is PrepStage.MODEL or as_json:
                    continue  # a model load cannot count its progress; the plan says it
                if event.stage not in bars:
                    bars[event.stage] = progress.add_task(
                        "", total=event.total, name=event.stage.value, stage="", unit=event.detail
                    )
                progress.update(bars[event.stage], completed=event.done, total=event.total)
                continue
            for task in bars.values():  # anything else ends the slow part
                progress.remove_task(task)
            bars.clear()
            if isinstance(event, AnswerDone):
                _print_answer(event.answer, as_json)
            elif as_json:
                continue
            elif isinstance(event, RouteChosen):
                route = event.route
                err.print(f"[dim]{escape(_route_line(route))}[/dim]", highlight=False)
            elif isinstance(event, PlanChosen):
                for line in describe(event.plan):
                    if line.startswith("layout:") and route and route.strategy is Strategy.RAG:
                        continue  # a whole-document layout says nothing of passages
                    err.print(f"[dim]{escape(line)}[/dim]", highlight=False)
            elif isinstance(event, AnswerToken):
                out.print(event.text, end="", highlight=False, markup=False)
            elif isinstance(event, Escalated):
                out.print()
                err.print(
                    f"[yellow]That was attempt {len(event.attempt.attempts) + 1}, set aside:"
                    f" {escape(event.reason)}[/yellow]",
                    highlight=False,
                )
                route = event.route
                err.print(f"[dim]{escape(_route_line(route))}[/dim]", highlight=False)


def _print_answer(answer: Answer, as_json: bool) -> None:
    from engine.caveats import answer_caveat

    if as_json:
        _print_json(answer)
        return
    out.print()
    caveat = answer_caveat(answer)
    if caveat is not None and not answer.cancelled:
        err.print(f"[yellow]{escape(caveat)}[/yellow]", highlight=False)
    if answer.citations:
        out.print("\nSources:", highlight=False)
        for citation in answer.citations:
            out.print(
                f"  [cyan]{escape(citation.location)}[/cyan]  {escape(citation.snippet)}",
                highlight=False,
            )
    t = answer.timings
    first = f"{t.first_token_seconds:.2f} s" if t.first_token_seconds is not None else "-"
    reuse = "loaded saved KV state, " if t.state_loaded else ""
    err.print(
        f"[dim]load {t.load_seconds:.2f} s, prefill {t.prefill_seconds:.2f} s ({reuse}"
        f"{t.evaluated_tokens:,} of {t.prompt_tokens:,} prompt tokens evaluated),"
        f" first token {first}, total {t.total_seconds:.2f} s,"
        f" {t.tokens_per_second:.1f} tokens/s[/dim]",
        highlight=False,
    )


@cli.command()
def batch(
    ctx: typer.Context,
    questions: Annotated[
        Path,
        typer.Argument(
            help="JSON lines (question, optional doc and id) or CSV with a question column."
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Answers, one JSON line each.")],
    doc: Annotated[
        str | None, typer.Option("--doc", help="The document of questions that name none.")
    ] = None,
    mode: ModeOption = None,
    model: ModelOption = None,
    kv_type: KVTypeOption = None,
    gpu_layers: GpuLayersOption = None,
) -> None:
    """Answer a file of questions, one JSON line per answer as each finishes; re-run to resume."""
    import threading

    from engine.batch import BadLine, BatchQuestion, answered_ids, open_output, read_questions
    from engine.errors import USER_ERRORS

    cancel = threading.Event()
    failed = 0
    flags = {"context": _context_flags(kv_type, gpu_layers), "router": _strategy_flag(mode)}
    with assistant(ctx, **flags) as longread:
        rows = list(read_questions(questions))
        for bad in (row for row in rows if isinstance(row, BadLine)):
            err.print(
                f"[yellow]{escape(f'skipped {questions.name} {bad}')}[/yellow]", highlight=False
            )
        done_before = answered_ids(output)
        todo = [r for r in rows if isinstance(r, BatchQuestion) and r.id not in done_before]
        skipped = sum(isinstance(r, BatchQuestion) for r in rows) - len(todo)
        if skipped:
            err.print(
                f"{skipped} already answered in {output}; answering the other {len(todo)}",
                highlight=False,
                markup=False,
            )
        with (
            open_output(output) as writer,
            _batch_progress(len(todo)) as progress,
            _ctrl_c_sets(cancel),
        ):
            for item in todo:
                try:
                    record = _answer_batch_question(longread, item, doc, model, cancel)
                except USER_ERRORS as error:
                    failed += 1
                    progress.console.print(
                        f"[red]line {item.line} ({escape(item.id)}):[/red] {escape(str(error))}",
                        highlight=False,
                    )
                    progress.advance()
                    continue
                except KeyboardInterrupt:  # a second Ctrl-C: stop now
                    cancel.set()
                if cancel.is_set():  # the answer in progress was cut short: not kept
                    err.print(
                        "[yellow]cancelled; answers so far are kept, re-run to resume[/yellow]"
                    )
                    raise typer.Exit(130)
                writer.write(record)
                progress.advance()
    bad_lines = sum(isinstance(r, BadLine) for r in rows)
    problems = [
        f"{count} {what}"
        for count, what in ((failed, "not answered"), (bad_lines, "malformed lines skipped"))
        if count
    ]
    if problems:
        err.print(
            f"[red]{', '.join(problems)}; fix them and re-run: only what is missing is"
            " answered[/red]"
        )
        raise typer.Exit(1)


def _answer_batch_question(
    longread: Assistant,
    item: BatchQuestion,
    default_doc: str | None,
    model: str | None,
    cancel: threading.Event,
) -> dict[str, Any]:
    """One batch question answered, as its output record."""
    from engine.errors import EngineError
    from engine.serialize import to_jsonable
    from engine.types import AnswerDone

    ref = item.doc or default_doc
    if ref is None:
        raise EngineError("names no document; give it a `doc` or pass --doc")
    document_id = longread.resolve(ref).id
    answer: Answer | None = None
    for event in longread.ask(
        document_id,
        item.question,
        strategy=longread.settings.router.forced_strategy,
        model=model,
        cancel=cancel,
    ):
        if isinstance(event, AnswerDone):
            answer = event.answer
    assert answer is not None, "ask always ends with AnswerDone"
    return {
        "id": item.id,
        "line": item.line,
        "doc": document_id,
        "question": item.question,
        "answer": answer.text,
        "strategy": answer.strategy.value,
        "verdict": answer.verdict.value,
        "escalated": answer.escalated,
        "route": to_jsonable(answer.route),
        "citations": to_jsonable(answer.citations),
        "grounding": to_jsonable(answer.grounding),
        "retrieval_confidence": answer.retrieval_confidence,
        "timings": to_jsonable(answer.timings),
        "attempts": [
            {"strategy": a.strategy.value, "answer": a.text, "verdict": a.verdict.value}
            for a in answer.attempts
        ],
    }


class _BatchBar:
    """A progress bar of questions with questions per minute and time left."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.console = progress.console
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.task = progress.add_task("", total=total, name="questions", stage="", unit="")

    def advance(self) -> None:
        from engine.batch import BatchProgress
        from engine.planner import format_seconds

        self.done += 1
        state = BatchProgress.measure(self.done, self.total, self.started, time.monotonic())
        rate = f"{state.per_minute:.1f}/min" if state.per_minute else ""
        left = state.seconds_left
        eta = f"{format_seconds(left)} left" if left else ""
        self.progress.update(self.task, completed=self.done, stage=f"{rate} {eta}".strip())


@contextmanager
def _batch_progress(total: int) -> Iterator[_BatchBar]:
    with _progress() as progress:
        yield _BatchBar(progress, total)


@models_cli.callback(invoke_without_command=True)
def models_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the bundled default and the models you registered, with their profiles."""
    from models.errors import ModelError

    if ctx.invoked_subcommand is not None:
        return
    rows: list[tuple[ModelEntry, ModelProfile | None, str | None]] = []
    with assistant(ctx) as longread:
        for entry in longread.models():
            # One unusable file (gone, cut short, damaged) is listed with its reason; it must
            # not hide the others, and asking with it stays the error it is.
            try:
                rows.append((entry, longread.model_profile(entry), None))
            except ModelError as error:
                rows.append((entry, None, str(error)))
    if as_json:
        _print_json(
            [
                {"model": e, "missing": e.is_missing, "problem": problem, "profile": p}
                for e, p, problem in rows
            ]
        )
        return
    table = Table()
    for column in ("name", "architecture", "params", "quant", "window"):
        table.add_column(column, no_wrap=True)
    table.add_column("file", ratio=1, overflow="fold")
    for entry, profile, _ in rows:
        name = Text(entry.name + (" *" if entry.is_default else ""))
        if profile is None:
            state = "file missing" if entry.is_missing else "unusable"
            table.add_row(name, Text(state, style="red"), "", "", "", Text(str(entry.path)))
            continue
        params = f"{profile.parameter_count / 1e6:,.0f}M" if profile.parameter_count else "?"
        table.add_row(
            name,
            Text(profile.architecture),
            params,
            Text(profile.file_type or "?"),
            f"{profile.context_length:,}",
            Text(entry.path.name),
        )
    out.print(table)
    for entry, _, problem in rows:
        if problem is not None:
            out.print(f"[red]{escape(entry.name)}:[/red] {escape(problem)}", highlight=False)
    out.print("* the default; `--json` shows each profile in full", highlight=False)


@models_cli.command("add")
def models_add(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A .gguf file.")],
    name: Annotated[str | None, typer.Option("--name", help="Default: the file name.")] = None,
) -> None:
    """Register a GGUF model you own, by path."""
    with assistant(ctx) as longread:
        entry = longread.add_model(path, name)
        profile = longread.model_profile(entry)
    out.print(
        f"added {entry.name}: {profile.architecture}, {profile.context_length:,}-token window",
        highlight=False,
        markup=False,
    )


@models_cli.command("remove")
def models_remove(ctx: typer.Context, name: str) -> None:
    """Forget a registered model (the file itself is left alone)."""
    with assistant(ctx) as longread:
        entry = longread.remove_model(name)
    out.print(f"removed {entry.name} ({entry.path})", highlight=False, markup=False)


@cache_cli.callback(invoke_without_command=True)
def cache_show(ctx: typer.Context) -> None:
    """Show the saved KV states: document, tokens, size, last used."""
    if ctx.invoked_subcommand is not None:
        return
    with assistant(ctx) as longread:
        entries = longread.cache_entries()
        titles = {d.id: d.title for d in longread.documents()}
        cap = longread.kv_store.max_bytes
    if not entries:
        out.print("No saved KV states. They are made by `longread ask` in the cached layout.")
        return
    table = Table("document", "tokens", "size", "last used", "n_ctx", "KV")
    for entry in entries:
        table.add_row(
            Text(titles.get(entry.document_id, entry.document_id[:12])),
            f"{entry.tokens:,}",
            _mib(entry.payload_bytes),
            entry.last_used.strftime("%Y-%m-%d %H:%M"),
            f"{entry.key.n_ctx:,}",
            entry.key.kv_type,
        )
    out.print(table)
    total = sum(e.payload_bytes for e in entries)
    out.print(f"{len(entries)} states, {_mib(total)} of a {_mib(cap)} cap", highlight=False)


@cache_cli.command("clear")
def cache_clear(
    ctx: typer.Context,
    doc: Annotated[str | None, typer.Argument(help="Only this document's states.")] = None,
) -> None:
    """Delete saved KV states (all, or one document's)."""
    with assistant(ctx) as longread:
        freed = longread.clear_cache(doc)
    out.print(f"freed {_mib(freed)}")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.1f} MiB"


@bench_cli.command("ingest")
def bench_ingest(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A PDF. Default: the 234-page Pride and Prejudice PDF in ../shared/corpus."
        ),
    ] = None,
    runs: Annotated[int, typer.Option(min=1, help="Repetitions; the best is reported.")] = 1,
    sample_chunks: Annotated[
        int,
        typer.Option(min=1, help="Chunks whose windows torch, ONNX fp32 and ONNX int8 all embed."),
    ] = 60,
) -> None:
    """Each stage of `add` and the whole add, the one-time ONNX export, and the embedding
    rate of torch fp32, ONNX fp32 and ONNX int8 side by side."""
    from engine.bench.ingest import DEFAULT_BENCH_PDF, run_ingest_benchmark

    target = path or DEFAULT_BENCH_PDF
    if not target.is_file():
        err.print(
            f"[red]error:[/red] {escape(str(target))} not found; pass a PDF to benchmark",
            highlight=False,
        )
        raise typer.Exit(1)
    err.print(f"benchmarking ingestion of {target} ...", highlight=False, markup=False)
    started = time.perf_counter()
    result = run_ingest_benchmark(target, runs=runs, sample_chunks=sample_chunks, progress=_say)
    out.print(result.report(), highlight=False, markup=False)
    err.print(f"({time.perf_counter() - started:.1f} s)")


CORPUS_DIR = Path(__file__).resolve().parent.parent / "shared" / "corpus"


def _say(message: str) -> None:
    err.print(f"[dim]{escape(message)}[/dim]", highlight=False)


@bench_cli.command("engine")
def bench_engine(
    model: Annotated[
        Path | None, typer.Option(help="A .gguf file. Default: the bundled model.")
    ] = None,
    rounds: Annotated[
        int, typer.Option(min=1, help="Alternating rounds for the parity figure.")
    ] = 3,
    threads: Annotated[int | None, typer.Option(min=1, help="llama.cpp threads.")] = None,
) -> None:
    """Prefill vs raw llama-cpp-python, cold vs cached follow-ups, KV planned vs allocated."""
    from engine.bench.engine import run_engine_benchmark

    result = run_engine_benchmark(model_path=model, threads=threads, rounds=rounds, progress=_say)
    out.print(result.report(), highlight=False, markup=False)


@bench_cli.command("passkey")
def bench_passkey(
    tokens: Annotated[
        int,
        typer.Option(min=1, help="Prompt length; past 8,192 the default model needs RoPE scaling."),
    ] = 13000,
    runs: Annotated[
        int, typer.Option(min=1, help="Documents (keys at random depths) per method.")
    ] = 3,
    methods: Annotated[
        str, typer.Option(help="Comma-separated: none, yarn, linear, ntk.")
    ] = "none,yarn",
    model: Annotated[
        Path | None, typer.Option(help="A .gguf file. Default: the bundled model.")
    ] = None,
) -> None:
    """Passkey past the trained window: does RoPE scaling recover the key? (slow on CPU)"""
    from engine.bench.passkey import run_passkey_benchmark
    from engine.types import RopeMethod

    try:
        chosen = tuple(RopeMethod(m.strip()) for m in methods.split(",") if m.strip())
    except ValueError:
        err.print(
            "[red]error:[/red] --methods takes none, yarn, linear, ntk;"
            f" got {escape(repr(methods))}",
            highlight=False,
        )
        raise typer.Exit(2) from None
    result = run_passkey_benchmark(
        target_tokens=tokens, runs=runs, methods=chosen, model_path=model, progress=_say
    )
    out.print(result.report(), highlight=False, markup=False)


@bench_cli.command("retrieval")
def bench_retrieval(
    ctx: typer.Context,
    corpus: Annotated[Path, typer.Option(help="The shared corpus folder.")] = CORPUS_DIR,
    queries: Annotated[int, typer.Option(min=1, help="LaRA questions used as queries.")] = 50,
    quick: Annotated[
        bool, typer.Option("--quick", help="Frankenstein alone: one build, a one-book library.")
    ] = False,
    process_runs: Annotated[
        int, typer.Option(min=1, help="`longread search` processes timed per mode.")
    ] = 5,
) -> None:
    """Index build speed on real books, search latency p50/p95 over the whole corpus, and
    `longread search` as a whole process, hybrid and BM25 side by side."""
    from engine.bench.retrieval import run_retrieval_benchmark
    from engine.config import load_settings
    from engine.errors import USER_ERRORS
    from retrieval.embedders import exports_dir

    if not corpus.is_dir():
        err.print(
            f"[red]error:[/red] corpus not found at {escape(str(corpus))}; pass --corpus",
            highlight=False,
        )
        raise typer.Exit(1)
    try:
        # The person's embedder settings, and their export folder so the export is made once.
        settings = load_settings(config_path=ctx.obj["config"], home=ctx.obj["home"])
    except USER_ERRORS as error:
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from error
    retrieval = settings.retrieval
    started = time.perf_counter()
    result = run_retrieval_benchmark(
        corpus,
        progress=_say,
        queries=queries,
        embedder_setting=retrieval.embedder,
        runtime=retrieval.embedder_runtime,
        exports=exports_dir(settings.home, retrieval.onnx_dir),
        quick=quick,
        process_runs=process_runs,
    )
    out.print(result.report(), highlight=False, markup=False)
    err.print(f"({time.perf_counter() - started:.1f} s)")


@bench_cli.command("beacons")
def bench_beacons(
    ctx: typer.Context,
    document: Annotated[
        Path | None,
        typer.Option(
            help="A .txt book. Default: A Christmas Carol from the corpus in ../shared/corpus."
        ),
    ] = None,
    chars: Annotated[
        int | None,
        typer.Option(
            min=1, help="Characters read from the book's start. Default: 40,000 (~10k tokens)."
        ),
    ] = None,
    window_tokens: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Tokens per beacon window; 0: automatic, a quarter of the model's window."
            " Default: 0.",
        ),
    ] = None,
    model: ModelOption = None,
) -> None:
    """Beacon building against plain prefill of the same tokens (is it prefill-bound?)"""
    from engine.bench.beacons import (
        DEFAULT_BUILD_DOCUMENT,
        DEFAULT_MAX_CHARS,
        DEFAULT_WINDOW_TOKENS,
        run_beacon_build_benchmark,
    )
    from engine.errors import USER_ERRORS

    target = document or DEFAULT_BUILD_DOCUMENT
    if not target.is_file():
        err.print(
            f"[red]error:[/red] {escape(str(target))} not found; pass --document", highlight=False
        )
        raise typer.Exit(1)
    try:
        result = run_beacon_build_benchmark(
            document=target,
            max_chars=chars if chars is not None else DEFAULT_MAX_CHARS,
            home=ctx.obj["home"],
            config_path=ctx.obj["config"],
            model=model,
            window_tokens=window_tokens if window_tokens is not None else DEFAULT_WINDOW_TOKENS,
            progress=_say,
        )
    except USER_ERRORS as error:
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from error
    out.print(result.report(), highlight=False, markup=False)


@bench_cli.command(
    "beacons-qa",
    help="LaRA reasoning questions answered from beacons vs retrieval (vs the whole text where"
    " it fits), token F1 (slow: about an hour on a CPU)",
)
def bench_beacons_qa(
    ctx: typer.Context,
    corpus: Annotated[Path, typer.Option(help="The shared corpus folder.")] = CORPUS_DIR,
    qa_file: Annotated[
        str | None,
        typer.Option(
            help="A question file in the corpus's qa/ folder."
            " Default: lara_32k_book_reasoning.jsonl."
        ),
    ] = None,
    books: Annotated[
        int | None, typer.Option(min=1, help="Only the first N books. Default: all.")
    ] = None,
    questions: Annotated[
        int | None, typer.Option(min=1, help="Only the first N questions a book. Default: all.")
    ] = None,
    model: ModelOption = None,
) -> None:
    from engine.bench.beacon_qa import DEFAULT_QA_FILE, run_beacon_qa_benchmark
    from engine.errors import USER_ERRORS

    chosen = qa_file or DEFAULT_QA_FILE
    questions_file = corpus / "qa" / chosen
    if not questions_file.is_file():
        err.print(
            f"[red]error:[/red] {escape(str(questions_file))} not found;"
            " pass --corpus or --qa-file",
            highlight=False,
        )
        raise typer.Exit(1)
    try:
        result = run_beacon_qa_benchmark(
            corpus,
            qa_file=chosen,
            books=books,
            questions_per_book=questions,
            home=ctx.obj["home"],
            config_path=ctx.obj["config"],
            model=model,
            progress=_say,
        )
    except USER_ERRORS as error:
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from error
    out.print(result.report(), highlight=False, markup=False)


if __name__ == "__main__":
    sys.exit(cli())
