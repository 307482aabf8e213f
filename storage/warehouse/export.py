"""Analyst access without the lock: Parquet exports, to a directory or to S3 through httpfs.

``export`` writes ``<target>/<name>.parquet`` per view (staging, intermediate, marts),
fact table and the list of rejected objects, then
``<target>/_manifest.json`` with row counts; ``connect_export`` opens an export as an
in-memory DuckDB with one view per file. S3 goes through DuckDB's httpfs extension
(shipped as a wheel, never downloaded) with the standard AWS settings boto3 uses.
"""

import contextlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import duckdb
from pydantic import BaseModel, Field

from factory.errors import BadInput, FactoryError
from storage.warehouse.ingest import Progress
from storage.warehouse.models import VIEWS
from storage.warehouse.schema import EXPORTED_TABLES, sql_string

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

    The warehouse is opened read-only, so exports never block each other.
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
        if remote:
            load_httpfs(con)
            configure_s3(con)
        else:
            Path(spec).expanduser().mkdir(parents=True, exist_ok=True)
        for done, (name, table) in enumerate(names.items()):
            notify("export", done, len(names))
            counts[name] = _export_one(con, table, spec, name, remote)
        notify("export", len(names), len(names))
    manifest = {
        "exported_at": datetime.now(UTC).replace(tzinfo=None).isoformat() + "Z",
        "warehouse": str(warehouse.path),
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

    Works for a directory or s3://bucket/prefix; nothing here takes the warehouse lock.
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


# -- httpfs and S3 -------------------------------------------------------------------------


def httpfs_extension_path() -> Path:
    """The httpfs extension file shipped in the duckdb-extension-httpfs wheel."""
    try:
        import duckdb_extension_httpfs
    except ImportError:
        raise FactoryError(
            "DuckDB's httpfs extension is not installed: pip install "
            f"duckdb-extension-httpfs=={duckdb.__version__} (the version must equal duckdb's)."
        ) from None
    base = Path(duckdb_extension_httpfs.__file__).parent / "extensions"
    found = sorted(base.glob(f"v{duckdb.__version__}/*/httpfs.duckdb_extension")) + sorted(
        base.glob(f"v{duckdb.__version__}/httpfs.duckdb_extension")
    )
    if not found:
        shipped = ", ".join(p.name for p in base.iterdir()) if base.is_dir() else "none"
        raise FactoryError(
            f"duckdb-extension-httpfs has no extension for duckdb {duckdb.__version__} "
            f"(it ships {shipped}): install the matching version."
        )
    return found[0]


def load_httpfs(con: duckdb.DuckDBPyConnection) -> None:
    """LOAD httpfs, installing it first from the wheel's file (extensions are not downloaded)."""
    with contextlib.suppress(duckdb.Error):
        con.execute("load httpfs")
        return
    path = httpfs_extension_path()
    try:
        con.execute(f"install {sql_string(str(path))}")
        con.execute("load httpfs")
    except duckdb.Error:
        # The extension directory (~/.duckdb) may not be writable: load the file itself.
        con.execute(f"load {sql_string(str(path))}")


def configure_s3(con: duckdb.DuckDBPyConnection, endpoint_url: str | None = None) -> None:
    """An S3 secret for httpfs from the standard AWS settings boto3 uses.

    Credentials come from the boto3 credentials chain (environment, profile, instance
    role); the endpoint from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (path-style URLs,
    TLS when the endpoint is https).
    """
    import boto3

    session = boto3.session.Session()
    credentials = session.get_credentials()
    options = ["type s3", f"region {sql_string(session.region_name or 'us-east-1')}"]
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options.append(f"key_id {sql_string(frozen.access_key)}")
        options.append(f"secret {sql_string(frozen.secret_key)}")
        if frozen.token:
            options.append(f"session_token {sql_string(frozen.token)}")
    endpoint = (
        endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    if endpoint:
        parts = urlsplit(endpoint)
        if not parts.netloc:
            raise BadInput(
                f"S3 endpoint {endpoint!r} has no host; write it with its scheme, for "
                "example http://127.0.0.1:8333."
            )
        options += [
            "endpoint " + sql_string(parts.netloc),
            "url_style 'path'",
            f"use_ssl {'true' if parts.scheme == 'https' else 'false'}",
        ]
    con.execute(f"create or replace temporary secret factory_s3 ({', '.join(options)})")
