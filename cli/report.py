"""The floor report: the summary's tables in the terminal, and one HTML page with charts.

Both show the same tables, built once by ``tables``. The page comes from the Jinja2
template ``cli/templates/floor_report.html`` (autoescaped); its charts are drawn by
matplotlib and inlined as SVG, so the page is one file that needs no network and
runs no script. Imported only by ``factory floor report``: matplotlib and DuckDB
stay out of every other command's start-up.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
from markupsafe import Markup
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from rich.console import Console
from rich.table import Table

from storage.warehouse.summary import FloorSummary, money, ms, share

_COLORS = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5")
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("cli", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


@dataclass
class ReportTable:
    """One table of the report: a header row, text cells, and the rows to flag."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    flagged: set[int] = field(default_factory=set)
    show_header: bool = True


# Column headers and cell formats of the summary's list fields, by column name.
_HEADERS = {
    "attempted_passes": "passes",
    "accepted_passes": "accepted",
    "first_pass_yield": "first pass",
    "worker_id": "worker",
    "device_class": "device",
    "busy_seconds": "busy s",
    "available_seconds": "available s",
    "avoided_device_seconds": "avoided s",
    "avoided_cost": "avoided",
    "net_saved": "net",
    "holder": "rights holder",
    "delivered_minutes": "minutes",
    "royalty": "owed",
    "p50_ms": "p50",
    "p95_ms": "p95",
    "budget_p95_ms": "p95 budget",
    "within_budget": "",
}
_FORMATS: dict[str, Callable[[Any, str], str]] = {
    **dict.fromkeys(("p50_ms", "p95_ms", "budget_p95_ms"), lambda v, _: ms(v)),
    **dict.fromkeys(("yield", "first_pass_yield", "utilization"), lambda v, _: share(v)),
    **dict.fromkeys(("avoided_cost", "net_saved", "royalty"), money),
    **dict.fromkeys(("busy_seconds", "avoided_device_seconds"), lambda v, _: f"{v:,.1f}"),
    "available_seconds": lambda v, _: f"{v:,.0f}",
    "delivered_minutes": lambda v, _: f"{v:,.3f}",
    "within_budget": lambda v, _: {True: "ok", False: "over"}.get(v, ""),
}


def tables(s: FloorSummary) -> list[ReportTable]:
    """The report's tables, for the terminal and the page alike."""
    c = s.currency
    headline = [
        ["delivered", f"{s.delivered_minutes:,.2f} min in {s.delivered_orders} orders"],
        ["cost per delivered minute", money(s.cost_per_delivered_minute, c)],
        ["device cost (of it waste)", f"{money(s.cost, c)} ({money(s.waste_cost, c)})"],
        ["yield / first-pass yield", f"{share(s.yield_)} / {share(s.first_pass_yield)}"],
        ["utilization", share(s.utilization)],
        ["cache savings (net)", f"{money(s.net_saved, c)} over {s.cache_hits} hits"],
        ["royalties owed", money(s.royalties_owed, c)],
        ["minutes without verified lineage", f"{s.unattributed_minutes:,.2f}"],
        ["objects rejected at ingest", str(s.rejected_objects)],
    ]
    rejected = {len(headline) - 1} if s.rejected_objects else set()
    over = {i for i, row in enumerate(s.latency) if row["within_budget"] is False}

    def listed(
        title: str, rows: list[dict[str, Any]], keys: tuple[str, ...], flagged: set[int]
    ) -> ReportTable:
        cells = [[_FORMATS.get(k, _text)(row[k], c) for k in keys] for row in rows]
        return ReportTable(title, [_HEADERS.get(k, k) for k in keys], cells, flagged)

    latency = ("stage", "attempts", "p50_ms", "p95_ms", "budget_p95_ms", "within_budget")
    yields = ("model", "attempted_passes", "accepted_passes", "yield", "first_pass_yield")
    use = ("worker_id", "device_class", "busy_seconds", "available_seconds", "utilization")
    cache = ("stage", "hits", "computed", "avoided_device_seconds", "avoided_cost", "net_saved")
    return [
        ReportTable("Factory floor", ["measure", "value"], headline, rejected, show_header=False),
        listed("Stage latency against the budget (ms)", s.latency, latency, over),
        listed("Yield by model", s.yield_by_model, yields, set()),
        listed("Utilization by worker", s.utilization_by_worker, use, set()),
        listed("Cache savings by stage", s.cache_by_stage, cache, set()),
        listed(
            "Royalties by rights holder",
            s.royalties_by_holder,
            ("holder", "delivered_minutes", "royalty"),
            set(),
        ),
    ]


def _text(value: Any, _currency: str) -> str:
    return str(value)


def print_summary(s: FloorSummary, out: Console) -> None:
    """The report's tables in the terminal; flagged rows in red."""
    for each in tables(s):
        table = Table(title=each.title, show_header=each.show_header)
        for i, header in enumerate(each.headers):
            table.add_column(header, justify="left" if i == 0 else "right")
        for i, row in enumerate(each.rows):
            table.add_row(*row, style="bold red" if i in each.flagged else None)
        out.print(table)


def render_html(s: FloorSummary, qc_docs: Path | None = None) -> str:
    """The floor summary as one self-contained HTML page (inline SVG charts, no scripts),
    linking the quality gate's Data Docs of the last judged run when there are some."""
    c = s.currency
    charts = [
        _chart(
            f"Cost per delivered minute ({c}) by day",
            [r["day"] for r in s.daily],
            [("cost per delivered minute", [r["cost_per_delivered_minute"] for r in s.daily])],
            kind="line",
        ),
        _chart(
            "Yield by model",
            [r["model"] for r in s.yield_by_model],
            [
                ("yield", [r["yield"] for r in s.yield_by_model]),
                ("first-pass yield", [r["first_pass_yield"] for r in s.yield_by_model]),
            ],
            percent=True,
            top=1.0,
        ),
        _chart(
            "Utilization by worker",
            [r["worker_id"] for r in s.utilization_by_worker],
            [("utilization", [r["utilization"] for r in s.utilization_by_worker])],
            percent=True,
            top=1.0,
        ),
        _chart(
            "Utilization by hour (all workers)",
            [r["hour"][5:16].replace("T", " ") for r in s.utilization_by_hour],
            [("utilization", [r["utilization"] for r in s.utilization_by_hour])],
            percent=True,
            kind="line",
        ),
        _chart(
            f"Cache savings by stage ({c})",
            [r["stage"] for r in s.cache_by_stage],
            [
                ("avoided", [r["avoided_cost"] for r in s.cache_by_stage]),
                ("net of lookups", [r["net_saved"] for r in s.cache_by_stage]),
            ],
        ),
    ]
    page = _TEMPLATES.get_template("floor_report.html")
    docs = qc_docs.resolve().as_uri() if qc_docs else None
    return page.render(summary=s, tables=tables(s), charts=charts, qc_docs=docs)


def _chart(
    title: str,
    labels: list[str],
    series: list[tuple[str, list[float | None]]],
    *,
    kind: str = "bar",
    percent: bool = False,
    top: float | None = None,
) -> Markup:
    """One chart as inline SVG: grouped bars, or lines over ordered labels.

    ``percent``: the values are ratios, shown as percentages. ``top``: the least
    height of the value axis (1.0 keeps ratios on a full scale).
    """
    figure = Figure(figsize=(6.4, 2.8), layout="constrained")
    axes = figure.subplots()
    axes.set_title(title, loc="left", fontsize=11, fontweight="bold")
    values = [v for _, points in series for v in points if v is not None]
    if not labels or not values:
        axes.set_axis_off()
        axes.text(0.02, 0.5, "no data yet", transform=axes.transAxes, color="#4a5568")
        return _svg(figure)
    positions = range(len(labels))
    width = 0.8 / len(series)
    for j, (name, points) in enumerate(series):
        shown = [float("nan") if v is None else v for v in points]
        color = _COLORS[j % len(_COLORS)]
        if kind == "line":
            axes.plot(positions, shown, marker="o", color=color, label=name)
        else:
            offsets = [p - 0.4 + width * (j + 0.5) for p in positions]
            axes.bar(offsets, shown, width=width, color=color, label=name)
    axes.set_xticks(list(positions), [label[:24] for label in labels], fontsize=8)
    if kind == "bar":  # a lone bar keeps a bar's width rather than the whole chart's
        axes.set_xlim(-0.6, max(len(labels), 3) - 0.4)
    if len(labels) > 8:
        axes.tick_params(axis="x", labelrotation=45)
    peak = max(values)
    axes.set_ylim(0, max(top or 0.0, peak * 1.15) or 1.0)
    if percent:
        axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes.tick_params(axis="y", labelsize=8)
    axes.grid(axis="y", color="#edf2f7")
    axes.set_axisbelow(True)
    axes.spines[["top", "right"]].set_visible(False)
    if len(series) > 1:
        axes.legend(
            fontsize=8, frameon=False, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2
        )
    return _svg(figure)


def _svg(figure: Figure) -> Markup:
    buffer = io.StringIO()
    # Text stays text (smaller, selectable); a fixed salt keeps the output repeatable.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "floor"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return Markup(text[text.index("<svg") :])
