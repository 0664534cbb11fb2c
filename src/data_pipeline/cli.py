"""The ``data-pipeline`` command.

Exit codes: 0 ok, 1 the run failed, 2 the file is invalid (or the command line is wrong).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from data_pipeline.pipeline import BatchSummary, LoadedPipeline

__all__ = ["app", "main"]

app = typer.Typer(
    name="data-pipeline",
    help="Run and check data pipelines described in YAML files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

FileArg = Annotated[Path, typer.Argument(help="The pipeline YAML file.", show_default=False)]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log each component's work (INFO).")]


def _console(stderr: bool = False):  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _load(file: Path):  # type: ignore[no-untyped-def]
    from data_pipeline.core.errors import ConfigError, DataPipelineError
    from data_pipeline.pipeline import load_pipeline

    try:
        return load_pipeline(file)
    except (ConfigError, DataPipelineError) as exc:
        err = _console(stderr=True)
        err.print(f"[bold red]invalid pipeline file[/] {file}", markup=True)
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None


@app.command()
def validate(file: FileArg) -> None:
    """Check a pipeline file without running anything."""
    loaded = _load(file)
    spec = loaded.spec
    _console().print(
        f"{file}: valid ({len(spec.sources)} sources, {len(spec.transformations)} transformation "
        f"pipelines, {len(spec.storage)} storage systems, {len(spec.processing)} processing pipelines, "
        f"{len(spec.dashboards)} dashboards; engine {spec.engine})",
        markup=False,
    )


Follow = Annotated[
    bool,
    typer.Option(
        "--follow",
        help="Run continuously over the file's StreamingSource, one micro-batch at a time, "
        "until the stream is idle; each batch commits with its checkpoint, and a restart "
        "continues after it (SIGTERM or Ctrl-C stop after the current batch).",
    ),
]
MaxBatches = Annotated[
    int | None,
    typer.Option(
        "--max-batches",
        min=1,
        help="With --follow: stop after this many batches.",
        show_default=False,
    ),
]


@app.command()
def run(
    file: FileArg,
    verbose: Verbose = False,
    follow: Follow = False,
    max_batches: MaxBatches = None,
) -> None:
    """Run a pipeline file end to end, then print rows and seconds per stage.

    With --follow: run over the file's StreamingSource one micro-batch at a time (a line per
    batch) until the stream is idle, --max-batches is reached or Ctrl-C.
    """
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from data_pipeline.pipeline import describe_error, run_pipeline

    if max_batches is not None and not follow:
        _console(stderr=True).print("--max-batches needs --follow", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if verbose:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s"
        )
    loaded = _load(file)
    if follow:
        _follow(file, loaded, max_batches)
        return
    console = _console()
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            tasks: dict[str, TaskID] = {}

            def on_stage(stage: str, event: str) -> None:
                if event == "start" and stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=1)
                elif event in ("done", "failed") and stage in tasks:
                    mark = "[green]done[/]" if event == "done" else "[red]failed[/]"
                    progress.update(tasks[stage], completed=1, description=f"{stage} {mark}")

            result = run_pipeline(loaded, on_stage=on_stage)
    except Exception as exc:
        err = _console(stderr=True)
        err.print("[bold red]pipeline failed[/]", markup=True)
        err.print(describe_error(exc), markup=False)
        raise typer.Exit(EXIT_FAILED) from None

    table = Table(title=f"pipeline {loaded.spec.name!r}")
    table.add_column("stage")
    table.add_column("rows", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("items")
    for stage in result.stages.values():
        rows = "-" if stage.rows is None else f"{stage.rows:,}"
        table.add_row(stage.stage, rows, f"{stage.seconds:.3f}", ", ".join(stage.items))
    table.add_row("total", "", f"{result.seconds:.3f}", "")
    console.print(table)
    for key, path in result.outputs.items():
        if key.startswith("dashboard:"):
            console.print(f"dashboard {key.split(':', 1)[1]!r}: {path}", markup=False)


def _follow(file: Path, loaded: LoadedPipeline, max_batches: int | None) -> None:
    from data_pipeline.core.errors import DataPipelineError
    from data_pipeline.pipeline import (
        describe_error,
        follow_pipeline,
        validate_follow,
    )

    err = _console(stderr=True)
    try:
        validate_follow(loaded)
    except DataPipelineError as exc:
        err.print(f"[bold red]cannot follow[/] {file}", markup=True)
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    console = _console()
    current = 0

    def on_batch(number: int, summary: BatchSummary) -> None:
        nonlocal current
        current = number
        console.print(batch_line(number, summary), markup=False)

    try:
        result = follow_pipeline(loaded, max_batches=max_batches, on_batch=on_batch)
    except KeyboardInterrupt:
        err.print(
            f"interrupted during batch {current + 1}: nothing of it was committed; the next run "
            "reads it again",
            markup=False,
        )
        raise typer.Exit(130) from None
    except Exception as exc:
        err.print("[bold red]pipeline failed[/]", markup=True)
        err.print(describe_error(exc), markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    why = {
        "idle": "the stream is idle",
        "max_batches": f"--max-batches {max_batches} reached",
        "interrupted": "interrupted",
    }[result.stopped]
    if result.checkpoint:
        where = f"checkpoint in {result.checkpoint}"
        if result.restored:
            where += f", continued after batch {result.restored}"
        console.print(where, markup=False)
    read = ", ".join(f"{name} {rows:,}" for name, rows in result.rows.items())
    console.print(
        f"followed {result.batches} batch{'' if result.batches == 1 else 'es'} in {result.seconds:.3f}s, stopped: {why}; "
        f"rows read: {read}",
        markup=False,
    )
    for key, path in result.outputs.items():
        if key.startswith("dashboard:"):
            console.print(f"dashboard {key.split(':', 1)[1]!r}: {path}", markup=False)


def batch_line(number: int, summary: BatchSummary) -> str:
    """The ``--follow`` line of one batch: rows in and out, late, rejected, watermark, lag,
    state size, checkpoint, latency."""
    per_source = ", ".join(f"{name} {rows:,}" for name, rows in summary.rows.items())
    parts = [
        f"batch {number}: {summary.total_rows:,} rows read ({per_source})",
        f"{summary.stored_rows:,} rows stored",
        f"{summary.emitted:,} emitted",
        f"{summary.late:,} late",
        f"{summary.rejected:,} rejected",
    ]
    if summary.duplicates:
        parts.append(f"{summary.duplicates:,} duplicates dropped")
    text = ", ".join(parts)
    if summary.watermark:
        marks = ", ".join(f"{k} {_when(v)}" for k, v in summary.watermark.items())
        text += f"; watermark {marks}"
    if summary.lag:
        lags = ", ".join(f"{k} {_lag(v)}" for k, v in summary.lag.items())
        text += f"; lag {lags}"
    if summary.checkpoint is not None:
        text += f"; state {_size(summary.state_bytes)}, checkpoint {summary.checkpoint}"
    return text + f"; {summary.seconds:.3f}s"


def _when(value: object) -> str:
    if value is None:
        return "-"
    iso = getattr(value, "isoformat", None)
    return str(iso()) if iso is not None else str(value)


def _lag(value: object) -> str:
    if isinstance(value, dict):
        if len(value) > 4:
            return f"{sum(int(v) for v in value.values()):,}"
        return "(" + ", ".join(f"{k} {int(v):,}" for k, v in value.items()) + ")"
    return "-" if value is None else f"{value}"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


@app.command()
def dashboard(file: FileArg) -> None:
    """Re-render a pipeline's dashboards from its stored data, without re-running ingestion."""
    from data_pipeline.pipeline import describe_error, render_dashboards

    loaded = _load(file)
    try:
        written = render_dashboards(loaded)
    except Exception as exc:
        err = _console(stderr=True)
        err.print("[bold red]rendering the dashboards failed[/]", markup=True)
        err.print(describe_error(exc), markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    console = _console()
    for name, path in written.items():
        console.print(f"dashboard {name!r}: {path}", markup=False)


def _print_version() -> None:
    from data_pipeline import __version__

    _console().print(f"data-pipeline {__version__}", markup=False)


def _version_option(value: bool) -> None:
    if value:
        _print_version()
        raise typer.Exit(EXIT_OK)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the version and exit.",
            callback=_version_option,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Run and check data pipelines described in YAML files."""


@app.command()
def version() -> None:
    """Print the version (the same as ``data-pipeline --version``)."""
    _print_version()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
