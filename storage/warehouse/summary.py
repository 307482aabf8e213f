"""The floor in numbers: the summary every report shows, from ``storage/sql/summary/*.sql``.

``headline.sql`` gives the one-row headline; each other file gives the rows of the
list field named after it. The number formats here are the ones every rendering
(terminal, HTML, Markdown) uses.
"""

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
from pydantic import BaseModel, Field

from storage.warehouse.core import Warehouse
from storage.warehouse.schema import read_sql

# Lists of the summary, each from the .sql file of its name.
LISTS: tuple[str, ...] = (
    "daily",
    "yield_by_model",
    "utilization_by_worker",
    "utilization_by_hour",
    "cache_by_stage",
    "royalties_by_holder",
    "latency",
)


# The lists FloorSummary.markdown shows (a run's floor artifact queries only these).
MARKDOWN_LISTS: tuple[str, ...] = ("latency", "royalties_by_holder")


class FloorSummary(BaseModel):
    """The headline numbers and the tables the report and the markdown artifact show."""

    warehouse: str
    currency: str
    delivered_orders: int
    delivered_minutes: float
    cost: float
    waste_cost: float
    cost_per_delivered_minute: float | None
    attempted_passes: int
    accepted_passes: int
    yield_: float | None = Field(alias="yield")
    first_pass_yield: float | None
    utilization: float | None
    busy_seconds: float
    available_seconds: float
    cache_hits: int
    avoided_cost: float
    net_saved: float
    royalties_owed: float
    unattributed_minutes: float
    rejected_objects: int
    daily: list[dict[str, Any]]
    yield_by_model: list[dict[str, Any]]
    utilization_by_worker: list[dict[str, Any]]
    utilization_by_hour: list[dict[str, Any]]
    cache_by_stage: list[dict[str, Any]]
    royalties_by_holder: list[dict[str, Any]]
    latency: list[dict[str, Any]]

    model_config = {"populate_by_name": True}

    def markdown(self) -> str:
        """The floor's numbers as Markdown, e.g. for a Prefect markdown artifact."""
        c = self.currency
        lines = [
            "# Factory floor",
            "",
            "| measure | value |",
            "|---|---|",
            f"| delivered | {self.delivered_minutes:,.2f} min in {self.delivered_orders} orders |",
            f"| cost per delivered minute | {money(self.cost_per_delivered_minute, c)} |",
            f"| device cost (waste) | {money(self.cost, c)} ({money(self.waste_cost, c)}) |",
            f"| yield (first pass) | {share(self.yield_)} ({share(self.first_pass_yield)}) |",
            f"| utilization | {share(self.utilization)} |",
            f"| cache savings | {money(self.net_saved, c)} net over {self.cache_hits} hits |",
            f"| royalties owed | {money(self.royalties_owed, c)} |",
        ]
        if self.unattributed_minutes:
            lines.append(
                f"| minutes without verified lineage | {self.unattributed_minutes:,.2f} min |"
            )
        if self.rejected_objects:
            lines.append(f"| objects rejected at ingest | {self.rejected_objects} |")
        lines += [
            "",
            "## Stage latency",
            "",
            "| stage | p50 | p95 | budget | |",
            "|---|---|---|---|---|",
        ]
        for row in self.latency:
            mark = {True: "✅", False: "❌"}.get(row["within_budget"], "")
            p50, p95, budget = (ms(row[k], " ms") for k in ("p50_ms", "p95_ms", "budget_p95_ms"))
            lines.append(f"| {row['stage']} | {p50} | {p95} | {budget} | {mark} |")
        if self.royalties_by_holder:
            lines += ["", "## Royalties", "", "| rights holder | minutes | owed |", "|---|---|---|"]
            for row in self.royalties_by_holder:
                lines.append(
                    f"| {row['holder']} | {row['delivered_minutes']:,.3f} | "
                    f"{money(row['royalty'], c)} |"
                )
        return "\n".join(lines) + "\n"


def summary(warehouse: Warehouse | Path | str, lists: Sequence[str] = LISTS) -> FloorSummary:
    """The floor's numbers over everything ingested so far.

    ``lists``: the lists to query (default all); the others come back empty. The
    headline is always there. ``MARKDOWN_LISTS`` are the ones ``markdown`` shows.
    """
    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    with wh.connect() as con:
        con.execute("begin")  # one snapshot for every number, and one catalog read
        (headline,) = _dicts(con, read_sql("summary/headline"))
        found = {name: _dicts(con, read_sql(f"summary/{name}")) for name in lists}
        con.execute("commit")
    return FloorSummary(
        warehouse=wh.name, **headline, **{name: found.get(name, []) for name in LISTS}
    )


def _dicts(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description]
    return [
        {
            k: (v.isoformat() if isinstance(v, date | datetime) else v)
            for k, v in zip(columns, r, strict=True)
        }
        for r in cursor.fetchall()
    ]


# -- number formats ---------------------------------------------------------------------------


def money(value: float | None, currency: str = "") -> str:
    """1,234.5678 USD; – for nothing."""
    return "–" if value is None else f"{value:,.4f} {currency}".rstrip()


def share(value: float | None, places: int = 1) -> str:
    """A ratio as a percentage (66.7%); – for nothing."""
    return "–" if value is None else f"{value:.{places}%}"


def ms(value: float | None, unit: str = "") -> str:
    """Milliseconds, whole (2,000); – for nothing."""
    return "–" if value is None else f"{value:,.0f}{unit}"
