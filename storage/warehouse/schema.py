"""The warehouse's tables, defined once in ``storage/sql/schema.sql``.

Writers run the DDL (every statement is ``create … if not exists``); what ingest
needs to know about a table, its columns and their types, is read back from the
catalog rather than written down a second time, and its key from the ``-- key:``
comment above it (DuckLake tables have no primary keys).
"""

import functools
import re
from pathlib import Path

import duckdb

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

# Exported name → table: the facts the marts are computed from, and the config they used.
FACT_TABLES: dict[str, str] = {
    "events": "raw_events",
    "availability": "raw_availability",
    "lineage": "raw_lineage",
    "lineage_parents": "raw_lineage_parents",
    "price_card": "price_card",
    "royalty_rate": "royalty_rate",
    "latency_budget": "latency_budget",
}
# What an export carries besides the views: the facts, and what ingest refused.
EXPORTED_TABLES: dict[str, str] = {**FACT_TABLES, "rejected_objects": "rejected_objects"}
# The tables ingest loads from the store (config tables come from the config files).
LOADED_TABLES: tuple[str, ...] = (
    "raw_events",
    "raw_availability",
    "raw_lineage",
    "raw_lineage_parents",
)
BOOKKEEPING_TABLES: tuple[str, ...] = ("ingested_objects", "rejected_objects")

_KEYED_TABLE = re.compile(
    r"^-- key: ([\w, ]+?)(?: \(.*\))?\ncreate table if not exists (\w+)", re.M
)


@functools.cache
def read_sql(name: str) -> str:
    """The text of ``storage/sql/<name>.sql`` (read once per process)."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create whatever table or index of the schema is missing."""
    con.execute(read_sql("schema"))


@functools.cache
def keys() -> dict[str, tuple[str, ...]]:
    """Table → its key columns, from the ``-- key:`` comments of ``schema.sql``."""
    return {
        table: tuple(c.strip() for c in key.split(","))
        for key, table in _KEYED_TABLE.findall(read_sql("schema"))
    }


def columns(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Table → column name → type, in table order, from the catalog (one query: each
    catalog query on a lake costs a round trip to its catalog database)."""
    rows = con.execute(
        "select table_name, column_name, data_type from duckdb_columns() "
        "where database_name = current_database() and schema_name = 'main' "
        "and list_contains(?, table_name) order by table_name, column_index",
        [list(tables)],
    ).fetchall()
    found: dict[str, dict[str, str]] = {table: {} for table in tables}
    for table, column, kind in rows:
        found[table][column] = kind
    return found


def row_counts(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...]) -> dict[str, int]:
    """Rows per table."""
    return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
