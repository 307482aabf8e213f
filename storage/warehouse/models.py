"""The model runner: config tables from the config files, then every SQL view in order.

Each model is one ``.sql`` file under ``storage/sql`` (staging, then intermediate,
then marts), a chain of named CTEs ending in ``select * from final``; the file
``<layer>/<name>.sql`` becomes the view ``<name>``. The views live in the lake's
catalog, so a reader that attaches the lake (read-only, from any DuckDB) has them.
"""

import hashlib
import json

import duckdb

from factory.floor import LatencyBudget, PriceCard
from storage.warehouse.schema import read_sql

# Views in dependency order: each file creates the view named after it.
MODELS: tuple[str, ...] = (
    "staging/stg_events",
    "staging/stg_availability",
    "staging/stg_lineage",
    "staging/stg_lineage_parents",
    "intermediate/int_events_attributed",
    "intermediate/int_events_priced",
    "intermediate/int_segment_passes",
    "intermediate/int_deliveries",
    "intermediate/int_deliverable_models",
    "marts/yield",
    "marts/utilization",
    "marts/cost_per_delivered_minute",
    "marts/cache_savings",
    "marts/royalties",
    "marts/stage_latency",
)
MARTS: tuple[str, ...] = tuple(m.split("/")[1] for m in MODELS if m.startswith("marts/"))
# Every view (staging, intermediate, marts): what an export carries, so the analysts'
# queries over any layer run on it.
VIEWS: tuple[str, ...] = tuple(m.split("/")[1] for m in MODELS)


def digest(card: PriceCard, budget: LatencyBudget) -> str:
    """What the views and config tables are made of: every model's SQL and the config."""
    parts = [read_sql(model) for model in MODELS]
    parts.append(json.dumps([card.model_dump(), budget.model_dump()], sort_keys=True))
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def refresh(con: duckdb.DuckDBPyConnection, card: PriceCard, budget: LatencyBudget) -> bool:
    """Reload the config tables and recreate every view, unless they are current.

    Runs inside the caller's transaction; True when it wrote anything. Writing only
    on a change keeps concurrent ingests from conflicting over identical views.
    """
    wanted = digest(card, budget)
    current = con.execute("select digest from models_version").fetchall()
    if current == [(wanted,)]:
        return False
    for table in ("price_card", "royalty_rate", "latency_budget", "models_version"):
        con.execute(f"delete from {table}")
    con.executemany(
        "insert into price_card values (?, ?, ?)",
        [(device, rate, card.currency) for device, rate in card.device_hour.items()],
    )
    con.execute(
        "insert into royalty_rate values (?, ?)",
        [card.royalty_per_delivered_minute, card.currency],
    )
    con.executemany(
        "insert into latency_budget values (?, ?)",
        [*budget.stages.items(), ("end_to_end", budget.end_to_end_ms)],
    )
    for model in MODELS:
        con.execute(f"create or replace view {model.split('/')[1]} as\n{read_sql(model)}")
    con.execute("insert into models_version values (?, now())", [wanted])
    return True
