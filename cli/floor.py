"""`factory floor`: load the floor's events and lineage into DuckLake, report on them, export them.

    factory floor ingest [--store S] [--warehouse W]     store → warehouse (incremental)
    factory floor report [--warehouse W] [--html PATH]   terminal summary + HTML with charts
    factory floor export [--warehouse W] [--to DIR|s3://] [--duckdb FILE]
                                                         Parquet per view and table, or one file
    factory floor compact [--warehouse W]                merge small files, expire old snapshots

The warehouse is a DuckLake: its catalog defaults to $FACTORY_HOME/floor/catalog.sqlite
(FACTORY_WAREHOUSE_CATALOG), its Parquet files to the store's warehouse/ prefix
(FACTORY_WAREHOUSE_DATA). The HTML report (cli/report.py) is self-contained (inline SVG
charts, no scripts, no network) and is written next to a SQLite catalog unless --html
says otherwise. DuckDB and matplotlib are imported by the commands that use them, so
`factory --help` does not pay for them.
"""

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cli.common import JsonOption
from factory.errors import BadInput, FactoryError
from factory.settings import Settings

floor_app = typer.Typer(
    help="The factory floor in numbers: yield, utilization, cost per delivered minute, "
    "cache savings, royalties and stage latency (DuckDB).",
    no_args_is_help=True,
)
out = Console()
console = Console(stderr=True)

WarehouseOption = Annotated[
    str | None,
    typer.Option(
        "--warehouse",
        help="The warehouse's DuckLake catalog: a SQLite file, sqlite:PATH or "
        "postgres:CONNINFO. Default: FACTORY_WAREHOUSE_CATALOG, else "
        "$FACTORY_HOME/floor/catalog.sqlite.",
        show_default=False,
    ),
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Object store to ingest from: a directory or s3://bucket/prefix. Default: "
        "FACTORY_STORE, else ~/.cache/asset-factory/store.",
        show_default=False,
    ),
]


def open_warehouse(catalog: str | None, **config: Any):
    """The warehouse the settings name, or the catalog given (its data path from
    FACTORY_WAREHOUSE_DATA, else beside it)."""
    from storage.warehouse import Warehouse

    settings = Settings()
    if catalog is None:
        return Warehouse(*settings.warehouse, **config)
    return Warehouse(catalog, settings.warehouse_data, **config)


def _friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print FactoryErrors the way `factory` does and exit with their code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BadInput as error:
            console.print(Text.assemble(("error: ", "bold red"), str(error)))
            raise typer.Exit(error.exit_code) from None
        except FactoryError as error:
            console.print(Text.assemble(("failed: ", "bold red"), str(error)))
            raise typer.Exit(error.exit_code) from None

    return wrapper


@contextmanager
def _progress(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar on stderr, driven by the warehouse's (phase, done, total) callback."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(phase: str, done: int, total: int) -> None:
            description = "listing the store" if phase == "list" else f"{label}"
            bar.update(task, description=description, completed=done, total=total or None)

        yield update


@floor_app.command("ingest")
@_friendly
def ingest(
    store: StoreOption = None,
    warehouse: WarehouseOption = None,
    price_card: Annotated[
        Path | None,
        typer.Option(help="Price card TOML. Default: factory/price_card.toml.", show_default=False),
    ] = None,
    latency_budget: Annotated[
        Path | None,
        typer.Option(
            help="Latency budget TOML. Default: factory/latency_budget.toml.", show_default=False
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Load new floor events, availability and verified lineage records into the warehouse.

    Incremental and idempotent: only objects not loaded before are fetched, and
    loading anything twice changes nothing. Lineage records whose signature does not
    verify are reported and never loaded; the exit status is then 1.
    """
    from factory.floor import load_latency_budget, load_price_card
    from storage.open import open_store
    from storage.trust import resolve_anchor

    target = open_warehouse(
        warehouse,
        price_card=load_price_card(price_card),
        latency_budget=load_latency_budget(latency_budget),
    )
    settings = Settings()
    if settings.legacy_warehouse.is_file() and not target.exists():
        console.print(
            f"note: {settings.legacy_warehouse} is the single-file warehouse of earlier "
            f"versions; the warehouse is now the DuckLake at {target.name}, rebuilt from the "
            "store by this ingest. Delete the old file when you no longer need it.",
            soft_wrap=True,
            highlight=False,
        )
    source = open_store(store or settings.store_spec, settings.store_timeouts)
    # Records count only when a key the factory root certified signed them.
    anchor = resolve_anchor(settings.trust, settings.keys_dir)
    if as_json:
        report = target.ingest(source, anchor)
        out.print_json(report.model_dump_json())
        if report.rejected:
            raise typer.Exit(1)
        return
    with _progress("ingesting objects") as update:
        report = target.ingest(source, anchor, progress=update)
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column()
    table.add_row("store", source.url)
    table.add_row("warehouse", target.name)
    for kind, listed in report.listed.items():
        table.add_row(kind, f"{report.loaded[kind]} new of {listed} objects")
    table.add_row(
        "rows added",
        ", ".join(f"{n} {t.removeprefix('raw_')}" for t, n in report.added.items()),
    )
    table.add_row("took", f"{report.seconds:.2f} s")
    out.print(table)
    if report.rejected:
        console.print(
            Text.assemble(
                ("rejected: ", "bold red"),
                f"{len(report.rejected)} object(s) were not loaded (everything else was):",
            )
        )
        for item in report.rejected:
            console.print(f"  {item.uri}\n    {item.reason}", soft_wrap=True, highlight=False)
        raise typer.Exit(1)


@floor_app.command("report")
@_friendly
def report(
    warehouse: WarehouseOption = None,
    html_path: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Where to write the HTML report. Default: floor.html next to a SQLite "
            "catalog, else in the current directory.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Summarise the floor in the terminal and write an HTML report with charts.

    With --json the summary (every headline number and table) goes to stdout as JSON,
    with the HTML report's path under "html"."""
    from cli.report import print_summary, render_html
    from quality.data_docs import latest_data_docs
    from storage.warehouse import summary

    source = open_warehouse(warehouse)
    s = summary(source)
    if not as_json:
        print_summary(s, out)
    beside = source.location.sqlite_path
    target = html_path or (beside.parent if beside else Path()) / "floor.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    docs = latest_data_docs(Settings().qc_docs_dir)
    target.write_text(render_html(s, docs), encoding="utf-8")
    if as_json:
        out.print_json(data={**s.model_dump(mode="json", by_alias=True), "html": str(target)})
        return
    out.print(f"HTML report: {target}", soft_wrap=True, highlight=False)


@floor_app.command("export")
@_friendly
def export(
    to: Annotated[
        str | None,
        typer.Option("--to", help="A directory, or s3://bucket/prefix (through DuckDB httpfs)."),
    ] = None,
    duckdb_file: Annotated[
        Path | None,
        typer.Option(
            "--duckdb",
            help="One DuckDB file (FILE.duckdb) with every table and view, for a single file.",
        ),
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Write every view and fact table as Parquet files, or as one DuckDB file."""
    if to is None and duckdb_file is None:
        raise BadInput("Say where to export: --to DIR|s3://bucket/prefix, --duckdb FILE, or both.")
    source = open_warehouse(warehouse)
    results = []
    with _progress("exporting tables") as update:
        if to is not None:
            results.append((source.export(to, progress=update), ".parquet"))
        if duckdb_file is not None:
            results.append((source.export_duckdb(duckdb_file, progress=update), ""))
    for result, suffix in results:
        table = Table(title=f"Exported to {result.target} in {result.seconds:.2f} s")
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, rows in result.tables.items():
            table.add_row(f"{name}{suffix}", f"{rows:,}")
        out.print(table)


@floor_app.command("compact")
@_friendly
def compact(
    warehouse: WarehouseOption = None,
    keep_days: Annotated[
        float,
        typer.Option(help="Days of snapshots to keep for time travel.", min=0),
    ] = 7.0,
) -> None:
    """Merge the small files that ingests leave into bigger ones, and drop what old
    snapshots alone still used. Safe while the factory ingests and analysts read."""
    with console.status("compacting the warehouse"):
        result = open_warehouse(warehouse).compact(keep_days)
    out.print(
        f"data files: {result['data_files_before']:,} → {result['data_files_after']:,}",
        highlight=False,
    )
