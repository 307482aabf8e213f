"""`factory floor`: load the floor's events and lineage into DuckDB, report on them, export them.

    factory floor ingest [--store S] [--warehouse W]     store → warehouse (incremental)
    factory floor report [--warehouse W] [--html PATH]   terminal summary + HTML with charts
    factory floor export [--warehouse W] --to DIR|s3://  Parquet per mart and fact table

The warehouse defaults to $FACTORY_HOME/floor.duckdb. The HTML report is
self-contained (inline SVG, no scripts, no network) and is written next to the
warehouse unless --html says otherwise.
"""

import functools
import html
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

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
    Path | None,
    typer.Option(
        "--warehouse",
        help="The DuckDB warehouse file. Default: $FACTORY_HOME/floor.duckdb.",
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


def default_warehouse() -> Path:
    return Settings().home / "floor.duckdb"


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
) -> None:
    """Load new floor events, availability and verified lineage records into the warehouse.

    Incremental and idempotent: only objects not loaded before are fetched, and
    loading anything twice changes nothing. Lineage records whose signature does not
    verify are reported and never loaded; the exit status is then 1.
    """
    from factory.floor import load_latency_budget, load_price_card
    from storage.open import open_store
    from storage.warehouse import Warehouse

    target = Warehouse(
        warehouse or default_warehouse(),
        price_card=load_price_card(price_card),
        latency_budget=load_latency_budget(latency_budget),
    )
    source = open_store(store or Settings().store_spec)
    with _progress("ingesting objects") as update:
        report = target.ingest(source, progress=update)
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column()
    table.add_row("store", source.url)
    table.add_row("warehouse", str(target.path))
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
            help="Where to write the HTML report. Default: next to the warehouse (floor.html).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Summarise the floor in the terminal and write an HTML report with charts."""
    from storage.warehouse import Warehouse, summary

    source = Warehouse(warehouse or default_warehouse())
    s = summary(source)
    _print_summary(s)
    target = html_path or source.path.with_suffix(".html")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(s), encoding="utf-8")
    out.print(f"HTML report: {target}", soft_wrap=True, highlight=False)


@floor_app.command("export")
@_friendly
def export(
    to: Annotated[
        str,
        typer.Option("--to", help="A directory, or s3://bucket/prefix (through DuckDB httpfs)."),
    ],
    warehouse: WarehouseOption = None,
) -> None:
    """Write every mart and fact table as Parquet, for analysts to query without the lock."""
    from storage.warehouse import Warehouse

    source = Warehouse(warehouse or default_warehouse())
    with _progress("exporting tables") as update:
        result = source.export(to, progress=update)
    table = Table(title=f"Exported to {result.target} in {result.seconds:.2f} s")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in result.tables.items():
        table.add_row(f"{name}.parquet", f"{rows:,}")
    out.print(table)


# -- terminal -----------------------------------------------------------------------------


def _money(value: float | None, currency: str) -> str:
    return "–" if value is None else f"{value:,.4f} {currency}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _print_summary(s: Any) -> None:
    c = s.currency
    head = Table(title="Factory floor", show_header=False)
    head.add_column(style="bold")
    head.add_column(justify="right")
    head.add_row("delivered", f"{s.delivered_minutes:,.2f} min in {s.delivered_orders} orders")
    head.add_row("cost per delivered minute", _money(s.cost_per_delivered_minute, c))
    head.add_row("device cost (of it waste)", f"{_money(s.cost, c)} ({_money(s.waste_cost, c)})")
    head.add_row("yield / first-pass yield", f"{_pct(s.yield_)} / {_pct(s.first_pass_yield)}")
    head.add_row("utilization", _pct(s.utilization))
    head.add_row("cache savings (net)", f"{_money(s.net_saved, c)} over {s.cache_hits} hits")
    head.add_row("royalties owed", _money(s.royalties_owed, c))
    if s.unattributed_minutes:
        head.add_row("minutes without verified lineage", f"{s.unattributed_minutes:,.2f}")
    if s.rejected_objects:
        head.add_row(Text("objects rejected at ingest", style="red"), str(s.rejected_objects))
    out.print(head)

    latency = Table(title="Stage latency (ms)")
    for column in ("stage", "attempts", "p50", "p95", "p95 budget", ""):
        latency.add_column(column, justify="left" if column == "stage" else "right")
    for row in s.latency:
        ok = row["within_budget"]
        mark = Text("ok", "green") if ok else Text("over", "bold red") if ok is False else Text("")
        latency.add_row(
            row["stage"],
            str(row["attempts"]),
            _ms(row["p50_ms"]),
            _ms(row["p95_ms"]),
            _ms(row["budget_p95_ms"]),
            mark,
        )
    out.print(latency)

    yields = Table(title="Yield by model")
    for column in ("model", "passes", "accepted", "yield", "first pass"):
        yields.add_column(column, justify="left" if column == "model" else "right")
    for row in s.yield_by_model:
        yields.add_row(
            row["model"],
            str(row["attempted_passes"]),
            str(row["accepted_passes"]),
            _pct(row["yield"]),
            _pct(row["first_pass_yield"]),
        )
    out.print(yields)

    use = Table(title="Utilization by worker")
    for column in ("worker", "device", "busy s", "available s", "utilization"):
        use.add_column(column, justify="right" if column.endswith(("s", "ion")) else "left")
    for row in s.utilization_by_worker:
        use.add_row(
            row["worker_id"],
            row["device_class"],
            f"{row['busy_seconds']:,.1f}",
            f"{row['available_seconds']:,.0f}",
            _pct(row["utilization"]),
        )
    out.print(use)

    cache = Table(title="Cache savings by stage")
    for column in ("stage", "hits", "computed", "avoided s", "avoided", "net"):
        cache.add_column(column, justify="left" if column == "stage" else "right")
    for row in s.cache_by_stage:
        cache.add_row(
            row["stage"],
            str(row["hits"]),
            str(row["computed"]),
            f"{row['avoided_device_seconds']:,.1f}",
            _money(row["avoided_cost"], c),
            _money(row["net_saved"], c),
        )
    out.print(cache)

    royalties = Table(title="Royalties by rights holder")
    for column in ("rights holder", "minutes", "owed"):
        royalties.add_column(column, justify="left" if column == "rights holder" else "right")
    for row in s.royalties_by_holder:
        royalties.add_row(
            row["holder"], f"{row['delivered_minutes']:,.3f}", _money(row["royalty"], c)
        )
    out.print(royalties)


# -- HTML -----------------------------------------------------------------------------------

_WIDTH, _HEIGHT = 640, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 32, 48
_COLORS = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5")


def _axis(title: str, top: float, fmt: Callable[[float], str]) -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{_LEFT}" y="18" class="title">{html.escape(title)}</text>',
    ]
    plot_h = _HEIGHT - _TOP - _BOTTOM
    for i in range(5):
        value = top * i / 4
        y = _TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{html.escape(fmt(value))}</text>"
        )
    return parts


def _top(values: list[float]) -> float:
    peak = max([v for v in values if v is not None] or [0.0])
    return peak * 1.15 if peak > 0 else 1.0


def bar_chart(
    title: str,
    labels: list[str],
    series: list[tuple[str, list[float | None]]],
    fmt: Callable[[float], str],
    top: float | None = None,
) -> str:
    """Grouped vertical bars as inline SVG."""
    if not labels:
        return _empty(title)
    top = top or _top([v for _, values in series for v in values if v is not None])
    parts = _axis(title, top, fmt)
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    group = plot_w / len(labels)
    bar = group * 0.8 / max(1, len(series))
    for i, label in enumerate(labels):
        x0 = _LEFT + group * i + group * 0.1
        for j, (name, values) in enumerate(series):
            value = values[i]
            if value is None:
                continue
            h = plot_h * min(value, top) / top
            parts.append(
                f'<rect x="{x0 + bar * j:.1f}" y="{_TOP + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{_COLORS[j % len(_COLORS)]}">'
                f"<title>{html.escape(f'{label} {name}: {fmt(value)}')}</title></rect>"
            )
        parts.append(
            f'<text x="{_LEFT + group * (i + 0.5):.1f}" y="{_HEIGHT - _BOTTOM + 16}" '
            f'class="tick" text-anchor="middle">{html.escape(label[:24])}</text>'
        )
    parts += _legend([name for name, _ in series])
    parts.append("</svg>")
    return "\n".join(parts)


def line_chart(
    title: str, labels: list[str], values: list[float | None], fmt: Callable[[float], str]
) -> str:
    """One series over ordered labels (days, hours) as inline SVG."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if not points:
        return _empty(title)
    top = _top([v for _, v in points])
    parts = _axis(title, top, fmt)
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    step = plot_w / max(1, len(labels) - 1) if len(labels) > 1 else 0
    x0 = _LEFT + (plot_w / 2 if len(labels) == 1 else 0)

    def xy(i: int, v: float) -> tuple[float, float]:
        return x0 + step * i, _TOP + plot_h - plot_h * v / top

    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in points))
    parts.append(f'<polyline points="{path}" fill="none" stroke="{_COLORS[0]}" stroke-width="2"/>')
    for i, v in points:
        x, y = xy(i, v)
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{_COLORS[0]}">'
            f"<title>{html.escape(f'{labels[i]}: {fmt(v)}')}</title></circle>"
        )
    every = max(1, len(labels) // 8)
    for i, label in enumerate(labels):
        if i % every == 0:
            x, _ = xy(i, 0)
            parts.append(
                f'<text x="{x:.1f}" y="{_HEIGHT - _BOTTOM + 16}" class="tick" '
                f'text-anchor="middle">{html.escape(label)}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts)


def _legend(names: list[str]) -> list[str]:
    if len(names) < 2:
        return []
    parts = []
    for j, name in enumerate(names):
        x = _LEFT + 140 * j
        parts.append(
            f'<rect x="{x}" y="{_HEIGHT - 18}" width="10" height="10" '
            f'fill="{_COLORS[j % len(_COLORS)]}"/>'
            f'<text x="{x + 14}" y="{_HEIGHT - 9}" class="tick">{html.escape(name)}</text>'
        )
    return parts


def _empty(title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} 60" role="img">'
        f'<text x="{_LEFT}" y="18" class="title">{html.escape(title)}</text>'
        f'<text x="{_LEFT}" y="44" class="tick">no data yet</text></svg>'
    )


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 1400px; color: #1a202c; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 1rem; }
svg { width: 100%; height: auto; background: #fff; border: 1px solid #e2e8f0; }
svg .title { font-weight: 600; font-size: 14px; } svg .tick { font-size: 11px; fill: #4a5568; }
svg .grid { stroke: #edf2f7; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border-bottom: 1px solid #e2e8f0; padding: .3rem .8rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.over { color: #c53030; font-weight: 600; } .muted { color: #718096; }
"""


def render_html(s: Any) -> str:
    """The floor summary as one self-contained HTML page (inline SVG, no scripts)."""
    c = s.currency

    def money(v: float) -> str:
        return f"{v:,.4f}"

    def pct(v: float) -> str:
        return f"{v:.0%}"

    charts = [
        line_chart(
            f"Cost per delivered minute ({c}) by day",
            [row["day"] for row in s.daily],
            [row["cost_per_delivered_minute"] for row in s.daily],
            money,
        ),
        bar_chart(
            "Yield by model",
            [row["model"] for row in s.yield_by_model],
            [
                ("yield", [row["yield"] for row in s.yield_by_model]),
                ("first-pass yield", [row["first_pass_yield"] for row in s.yield_by_model]),
            ],
            pct,
            top=1.0,
        ),
        bar_chart(
            "Utilization by worker",
            [row["worker_id"] for row in s.utilization_by_worker],
            [("utilization", [row["utilization"] for row in s.utilization_by_worker])],
            pct,
            top=max(1.0, _top([r["utilization"] or 0 for r in s.utilization_by_worker])),
        ),
        line_chart(
            "Utilization by hour (all workers)",
            [row["hour"][5:16].replace("T", " ") for row in s.utilization_by_hour],
            [row["utilization"] for row in s.utilization_by_hour],
            pct,
        ),
        bar_chart(
            f"Cache savings by stage ({c})",
            [row["stage"] for row in s.cache_by_stage],
            [
                ("avoided", [row["avoided_cost"] for row in s.cache_by_stage]),
                ("net of lookups", [row["net_saved"] for row in s.cache_by_stage]),
            ],
            money,
        ),
    ]
    headline = _html_table(
        ["measure", "value"],
        [
            ["delivered", f"{s.delivered_minutes:,.2f} min in {s.delivered_orders} orders"],
            ["cost per delivered minute", _money(s.cost_per_delivered_minute, c)],
            ["device cost (of it waste)", f"{_money(s.cost, c)} ({_money(s.waste_cost, c)})"],
            ["yield / first-pass yield", f"{_pct(s.yield_)} / {_pct(s.first_pass_yield)}"],
            ["utilization", _pct(s.utilization)],
            ["cache savings (net)", f"{_money(s.net_saved, c)} over {s.cache_hits} hits"],
            ["royalties owed", _money(s.royalties_owed, c)],
            ["minutes without verified lineage", f"{s.unattributed_minutes:,.2f}"],
            ["objects rejected at ingest", str(s.rejected_objects)],
        ],
    )
    latency = _html_table(
        ["stage", "attempts", "p50 ms", "p95 ms", "p95 budget ms", "within budget"],
        [
            [
                row["stage"],
                str(row["attempts"]),
                _ms(row["p50_ms"]),
                _ms(row["p95_ms"]),
                _ms(row["budget_p95_ms"]),
                {True: "yes", False: "NO"}.get(row["within_budget"], "–"),
            ]
            for row in s.latency
        ],
    )
    royalties = _html_table(
        ["rights holder", "delivered minutes", f"owed ({c})"],
        [
            [row["holder"], f"{row['delivered_minutes']:,.3f}", _money(row["royalty"], c)]
            for row in s.royalties_by_holder
        ],
    )
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        "<title>Factory floor</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Factory floor</h1>"
        f'<p class="muted">{html.escape(s.warehouse)}</p>'
        f"{headline}"
        f'<div class="charts">{"".join(charts)}</div>'
        f"<h2>Stage latency against the budget</h2>{latency}"
        f"<h2>Royalties by rights holder</h2>{royalties}"
        "</body></html>\n"
    )


def summary_markdown(warehouse: Any) -> str:
    """The floor summary as Markdown (see ``storage.warehouse.summary_markdown``)."""
    from storage.warehouse import summary_markdown as markdown

    return markdown(warehouse)
