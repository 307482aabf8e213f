"""Exports for those who want files, not a lake: Parquet per view, or one DuckDB file.

``export`` writes ``<target>/<name>.parquet`` per view (staging, intermediate, marts),
fact table and the list of rejected objects, then ``<target>/_manifest.json`` with
row counts; ``connect_export`` opens such an export as an in-memory DuckDB with one
view per file. S3 goes through DuckDB's httpfs extension (shipped as a wheel, never
downloaded) with the standard AWS settings boto3 uses. ``export_duckdb`` writes one
DuckDB file holding the tables, the views over them and the lineage indexes: the
warehouse as a single file, as it was before DuckLake.
"""

import contextlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
from pydantic import BaseModel, Field

from factory.errors import BadInput
from storage.warehouse.extensions import configure_s3, load_httpfs
from storage.warehouse.ingest import Progress
from storage.warehouse.models import MATERIALISED, MODELS, VIEWS
from storage.warehouse.schema import EXPORTED_TABLES, read_sql, sql_string

if TYPE_CHECKING:
    from storage.warehouse.core import Warehouse


class ExportReport(BaseModel):
    target: str
    tables: dict[str, int] = Field(description="Exported name → rows")
    seconds: float


def export(
    warehouse: "Warehouse", target: str | Path, *, progress: Progress | None = None
) -> ExportReport:
    """Write every view and fact table as Parquet to a directory or s3://bucket/prefix.

    It reads one snapshot of the lake, so ingests go on meanwhile.
    """
    from storage.open import open_store

    started = time.perf_counter()
    notify = progress or (lambda phase, done, total: None)
    spec = str(target)
    remote = spec.startswith("s3://")
    destination = open_store(spec)  # validates the URL or names the directory
    names = {**{view: view for view in VIEWS}, **EXPORTED_TABLES}
    counts: dict[str, int] = {}
    with warehouse.connect() as con:
        con.execute("begin")  # every file from one snapshot
        if remote:
            load_httpfs(con)
            configure_s3(con)
        else:
            Path(spec).expanduser().mkdir(parents=True, exist_ok=True)
        for done, (name, table) in enumerate(names.items()):
            notify("export", done, len(names))
            counts[name] = _export_one(con, table, spec, name, remote)
        notify("export", len(names), len(names))
        con.execute("commit")
    manifest = {
        "exported_at": datetime.now(UTC).replace(tzinfo=None).isoformat() + "Z",
        "warehouse": warehouse.name,
        "tables": {name: {"file": f"{name}.parquet", "rows": n} for name, n in counts.items()},
    }
    destination.put("_manifest.json", json.dumps(manifest, indent=2).encode(), "application/json")
    return ExportReport(target=spec, tables=counts, seconds=time.perf_counter() - started)


def _export_one(
    con: duckdb.DuckDBPyConnection, table: str, spec: str, name: str, remote: bool
) -> int:
    rows = con.execute(f"select count(*) from {table}").fetchone()[0]
    if remote:
        final = f"{spec.rstrip('/')}/{name}.parquet"
        con.execute(
            f"copy (select * from {table}) to {sql_string(final)} "
            "(format parquet, compression zstd)"
        )
        return rows
    directory = Path(spec).expanduser()
    # Written beside the target and renamed, so a reader never sees half a file.
    partial = directory / f".{name}.parquet.partial"
    con.execute(
        f"copy (select * from {table}) to {sql_string(str(partial))} "
        "(format parquet, compression zstd)"
    )
    os.replace(partial, directory / f"{name}.parquet")
    return rows


def connect_export(target: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per exported Parquet file: what analysts query.

    Works for a directory or s3://bucket/prefix.
    """
    spec = str(target).rstrip("/")
    con = duckdb.connect()
    if spec.startswith("s3://"):
        load_httpfs(con)
        configure_s3(con)
    elif not Path(spec).expanduser().is_dir():
        raise BadInput(f"{spec} is not an export directory: run `factory floor export` first.")
    else:
        spec = str(Path(spec).expanduser())
    for name in (*VIEWS, *EXPORTED_TABLES):
        con.execute(
            f"create view {name} as select * from read_parquet("
            f"{sql_string(f'{spec}/{name}.parquet')})"
        )
    return con


# The indexes the lineage queries probe (DuckLake tables have none; a DuckDB file can).
_EXPORT_INDEXES = (
    "create index raw_lineage_asset on raw_lineage (asset_digest)",
    "create index raw_lineage_parents_child on raw_lineage_parents (asset_digest)",
    "create index raw_lineage_parents_parent on raw_lineage_parents (parent_digest)",
)


def export_duckdb(
    warehouse: "Warehouse", destination: Path | str, *, progress: Progress | None = None
) -> ExportReport:
    """One DuckDB file with every table, the views over them and the lineage indexes.

    Written beside the destination and renamed into place, from one snapshot of the lake.
    """
    started = time.perf_counter()
    notify = progress or (lambda phase, done, total: None)
    target = Path(destination).expanduser().absolute()
    if target.suffix != ".duckdb":
        raise BadInput(f"{target} does not end in .duckdb: name the export file FILE.duckdb.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    with warehouse.connect() as con:
        lake = con.execute("select current_database()").fetchone()[0]
        tables = [
            name
            for (name,) in con.execute(
                "select table_name from duckdb_tables() where database_name = current_database() "
                "order by table_name"
            ).fetchall()
        ]
        alias = f"export_{os.getpid()}_{id(con)}"
        con.execute(f"attach {sql_string(str(partial))} as {alias}")
        counts: dict[str, int] = {}
        try:
            con.execute("begin")  # every table from one snapshot
            for done, table in enumerate(tables):
                notify("export", done, len(tables) + 1)
                con.execute(
                    f"create table {alias}.main.{table} as select * from {lake}.main.{table}"
                )
                copied = con.execute(f"select count(*) from {alias}.main.{table}").fetchone()
                counts[table] = copied[0]
            con.execute("commit")
            con.execute(f"use {alias}")
            for statement in _EXPORT_INDEXES:
                con.execute(statement)
            for model in MODELS:
                name = model.split("/")[1]
                if name not in MATERIALISED:  # those were copied as the tables they are
                    con.execute(f"create view {name} as\n{read_sql(model)}")
            notify("export", len(tables) + 1, len(tables) + 1)
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("rollback")
            con.execute(f"use {lake}")
            con.execute(f"detach {alias}")
            partial.unlink(missing_ok=True)
            raise
        con.execute(f"use {lake}")
        con.execute(f"detach {alias}")
    os.replace(partial, target)
    return ExportReport(target=str(target), tables=counts, seconds=time.perf_counter() - started)
