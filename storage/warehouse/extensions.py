"""DuckDB extensions from their wheels (never downloaded), and S3 settings for httpfs.

Each extension ships as a ``duckdb-extension-<name>`` wheel whose version must equal
duckdb's; ``load`` installs it from the wheel's file the first time, then loads it.
"""

import contextlib
import importlib
import os
from pathlib import Path
from urllib.parse import urlsplit

import duckdb

from factory.errors import BadInput, FactoryError
from storage.warehouse.schema import sql_string


def extension_path(name: str) -> Path:
    """The ``<name>.duckdb_extension`` file shipped in the duckdb-extension-<name> wheel."""
    wheel = f"duckdb-extension-{name}=={duckdb.__version__}"
    try:
        package = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
        raise FactoryError(
            f"DuckDB's {name} extension is not installed: pip install {wheel} "
            "(the version must equal duckdb's)."
        ) from None
    base = Path(package.__file__).parent / "extensions"
    version = f"v{duckdb.__version__}"
    found = sorted(base.glob(f"{version}/*/{name}.duckdb_extension")) + sorted(
        base.glob(f"{version}/{name}.duckdb_extension")
    )
    if not found:
        shipped = ", ".join(p.name for p in base.iterdir()) if base.is_dir() else "none"
        raise FactoryError(
            f"duckdb-extension-{name} has no extension for duckdb {duckdb.__version__} "
            f"(it ships {shipped}): pip install {wheel}."
        )
    return found[0]


def load(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD ``name``, installing it first from its wheel's file."""
    with contextlib.suppress(duckdb.Error):
        con.execute(f"load {name}")
        return
    path = extension_path(name)
    try:
        con.execute(f"install {sql_string(str(path))}")
        con.execute(f"load {name}")
    except duckdb.Error:
        # The extension directory (~/.duckdb) may not be writable: load the file itself.
        con.execute(f"load {sql_string(str(path))}")


def load_httpfs(con: duckdb.DuckDBPyConnection) -> None:
    """LOAD httpfs from the duckdb-extension-httpfs wheel."""
    load(con, "httpfs")


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
