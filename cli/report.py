"""The floor report: the summary's tables in the terminal, and one HTML page with charts.

Both show the same tables, built once by ``tables``. The page comes from the Jinja2
template ``cli/templates/floor_report.html`` (autoescaped); its charts are drawn by
matplotlib and inlined as SVG, so the page is one file that needs no network and
runs no script. Imported only by ``factory floor report``: matplotlib and DuckDB
stay out of every other command's start-up.
"""

import io
from dataclasses import dataclass, field

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
    verdict = {True: "ok", False: "over"}
    return [
        ReportTable(
            "Factory floor",
            ["measure", "value"],
            headline,
            flagged={len(headline) - 1} if s.rejected_objects else set(),
            show_header=False,
        ),
        ReportTable(
            "Stage latency against the budget (ms)",
            ["stage", "attempts", "p50", "p95", "p95 budget", ""],
            [
                [
                    r["stage"],
                    str(r["attempts"]),
                    ms(r["p50_ms"]),
                    ms(r["p95_ms"]),
                    ms(r["budget_p95_ms"]),
                    verdict.get(r["within_budget"], ""),
                ]
                for r in s.latency
            ],
            flagged={i for i, r in enumerate(s.latency) if r["within_budget"] is False},
        ),
        ReportTable(
            "Yield by model",
            ["model", "passes", "accepted", "yield", "first pass"],
            [
                [
                    r["model"],
                    str(r["attempted_passes"]),
                    str(r["accepted_passes"]),
                    share(r["yield"]),
                    share(r["first_pass_yield"]),
                ]
                for r in s.yield_by_model
            ],
        ),
        ReportTable(
            "Utilization by worker",
            ["worker", "device", "busy s", "available s", "utilization"],
            [
                [
                    r["worker_id"],
                    r["device_class"],
                    f"{r['busy_seconds']:,.1f}",
                    f"{r['available_seconds']:,.0f}",
                    share(r["utilization"]),
                ]
                for r in s.utilization_by_worker
            ],
        ),
        ReportTable(
            "Cache savings by stage",
            ["stage", "hits", "computed", "avoided s", "avoided", "net"],
            [
                [
                    r["stage"],
                    str(r["hits"]),
                    str(r["computed"]),
                    f"{r['avoided_device_seconds']:,.1f}",
                    money(r["avoided_cost"], c),
                    money(r["net_saved"], c),
                ]
                for r in s.cache_by_stage
            ],
        ),
        ReportTable(
            "Royalties by rights holder",
            ["rights holder", "minutes", "owed"],
            [
                [r["holder"], f"{r['delivered_minutes']:,.3f}", money(r["royalty"], c)]
                for r in s.royalties_by_holder
            ],
        ),
    ]


def print_summary(s: FloorSummary, out: Console) -> None:
    """The report's tables in the terminal; flagged rows in red."""
    for each in tables(s):
        table = Table(title=each.title, show_header=each.show_header)
        for i, header in enumerate(each.headers):
            table.add_column(header, justify="left" if i == 0 else "right")
        for i, row in enumerate(each.rows):
            table.add_row(*row, style="bold red" if i in each.flagged else None)
        out.print(table)


def render_html(s: FloorSummary) -> str:
    """The floor summary as one self-contained HTML page (inline SVG charts, no scripts)."""
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
    return page.render(summary=s, tables=tables(s), charts=charts)


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
