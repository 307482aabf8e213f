"""The model runner: config tables from the config files, then every SQL model in order.

Each model is one ``.sql`` file under ``storage/sql`` (staging, then intermediate,
then marts), a chain of named CTEs ending in ``select * from final``; the file
``<layer>/<name>.sql`` becomes the view ``<name>``, or, for the few models in
``MATERIALISED``, the table ``<name>`` holding that query's rows. The views and
tables live in the lake's catalog, so a reader that attaches the lake (read-only,
from any DuckDB) has them.

Materialised models are the expensive steps the marts share (a window over every
event, a walk of the lineage graph). Every row of theirs belongs to one order and
depends only on that order's events (and on lineage), so ingest keeps them current
order by order: in the transaction that loads a batch, the rows of the orders the
batch touched are deleted and computed again by the model's own SQL with its source
restricted to those orders (``refresh_orders``). A change to any model's SQL or the
config rebuilds them whole (``refresh``).
"""

import hashlib
import json
import re
from collections.abc import Iterable

import duckdb

from factory.floor import LatencyBudget, PriceCard
from storage.warehouse.schema import read_sql, sql_string

# Models in dependency order: each file creates the view (or table) named after it.
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
# Models kept as tables → the source each one's rows of an order are computed from
# (restricted to the orders being refreshed; every other input is read whole).
MATERIALISED: dict[str, str] = {
    "int_events_attributed": "stg_events",
    "int_deliverable_models": "int_deliveries",
}
MARTS: tuple[str, ...] = tuple(m.split("/")[1] for m in MODELS if m.startswith("marts/"))
# Every model (staging, intermediate, marts): what an export carries, so the analysts'
# queries over any layer run on it.
VIEWS: tuple[str, ...] = tuple(m.split("/")[1] for m in MODELS)


def digest(card: PriceCard, budget: LatencyBudget) -> str:
    """What the views, tables and config tables are made of: every model's SQL, which
    models are tables, and the config."""
    parts = [read_sql(model) for model in MODELS]
    parts.append(" ".join(MATERIALISED))
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
    here = "where database_name = current_database()"
    kinds = dict(
        con.execute(
            f"select table_name, 'table' from duckdb_tables() {here} union all "
            f"select view_name, 'view' from duckdb_views() {here}"
        ).fetchall()
    )
    for model in MODELS:
        name = model.split("/")[1]
        wanted_kind = "table" if name in MATERIALISED else "view"
        if kinds.get(name, wanted_kind) != wanted_kind:
            con.execute(f"drop {kinds[name]} {name}")
        con.execute(f"create or replace {wanted_kind} {name} as\n{read_sql(model)}")
    con.execute("insert into models_version values (?, now())", [wanted])
    return True


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Compute every materialised model whole (after rows were loaded other than by
    ingest). Runs inside the caller's transaction."""
    for model in MODELS:
        name = model.split("/")[1]
        if name in MATERIALISED:
            con.execute(f"create or replace table {name} as\n{read_sql(model)}")


def refresh_orders(con: duckdb.DuckDBPyConnection, orders: Iterable[str]) -> None:
    """Compute the materialised models' rows of ``orders`` again, in dependency order.

    Runs inside the caller's transaction (the one that loaded the rows that changed).
    """
    scope = sorted(set(orders))
    if not scope:
        return
    # A handful of orders (the end of a run) as an IN list, which plans fastest; a
    # batch's few thousand as a list joined (as an IN list they cost 0.4 s a statement).
    literals = ", ".join(map(sql_string, scope))
    restrict = (
        f"order_id in ({literals})"
        if len(scope) <= 100
        else f"order_id in (select unnest([{literals}]::varchar[]))"
    )
    for model in MODELS:
        name = model.split("/")[1]
        if name in MATERIALISED:
            con.execute(f"delete from {name} where {restrict}")
            con.execute(f"insert into {name}\n{scoped(model, MATERIALISED[name], restrict)}")


_FIRST_WITH = re.compile(r"^with( recursive)?\s", re.M)


def scoped(model: str, source: str, restrict: str) -> str:
    """The model's SQL with ``source`` restricted by ``restrict`` (a condition on its
    rows): a first CTE of the source's name, which the model then reads instead."""
    sql = read_sql(model)
    first = _FIRST_WITH.search(sql)
    assert first is not None, f"{model}.sql does not start with a CTE"
    restricted = (
        f"with{first.group(1) or ''} {source} as (\n"
        f"    select * from main.{source} where {restrict}\n),\n"
    )
    return sql[: first.start()] + restricted + sql[first.end() :]
