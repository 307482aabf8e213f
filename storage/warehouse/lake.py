"""Where the warehouse lives (a DuckLake catalog and its data path), and how it is opened.

The warehouse is a DuckLake: a catalog database (SQLite by default, PostgreSQL for a
fleet) that records snapshots, plus Parquet data files in a directory or on S3. Any
number of processes read it while others write: a reader sees the last committed
snapshot and takes no lock a writer waits for; writers commit optimistically and,
when two commit at once, one gets "database is locked" or a transaction conflict and
does its transaction again (``transaction``), after a bounded, jittered backoff.

Each process keeps one in-memory DuckDB with the extensions loaded (loading them costs
about 0.3 s, so once per process, not per connection) and each catalog attached once;
``cursor`` hands out connections to it with the catalog in use.
"""

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb
from pydantic import BaseModel

from factory.errors import BadInput, FactoryError
from storage.warehouse import extensions
from storage.warehouse.schema import sql_string

log = logging.getLogger("factory.floor")
T = TypeVar("T")

# What a commit that lost a race says: SQLite's writer lock (or a WAL snapshot that
# another commit overtook), or DuckLake's own conflict check. Both mean "do it again".
_RETRYABLE = ("database is locked", "conflict", "failed to commit ducklake transaction")


class WarehouseMissing(FactoryError):
    """There is no warehouse where one was expected."""


class WarehouseBusy(FactoryError):
    """Commits kept losing to other writers for longer than the warehouse's patience."""


class WarehouseLocation(BaseModel, frozen=True):
    """A DuckLake: its catalog (``sqlite:PATH`` or ``postgres:CONNINFO``) and data path."""

    catalog: str
    data: str

    @classmethod
    def of(cls, catalog: "WarehouseLocation | Path | str", data: Path | str | None = None):
        """From a catalog spec or SQLite path, and a data path (default: beside the catalog).

        A ``.duckdb`` file is the warehouse before DuckLake: refused with what to do.
        """
        if isinstance(catalog, WarehouseLocation):
            return catalog if data is None else cls(catalog=catalog.catalog, data=_data(data))
        spec = str(catalog).removeprefix("ducklake:")
        if spec.startswith("postgres:"):
            if data is None:
                raise BadInput(
                    "A PostgreSQL warehouse catalog needs a data path shared by every worker: "
                    "set FACTORY_WAREHOUSE_DATA (s3://bucket/prefix/ or a shared directory)."
                )
            return cls(catalog=spec, data=_data(data))
        path = Path(spec.removeprefix("sqlite:")).expanduser().absolute()
        if path.suffix == ".duckdb":
            raise BadInput(
                f"{path} is a single DuckDB file, the warehouse before DuckLake. The warehouse "
                "is now a DuckLake catalog (default $FACTORY_HOME/floor/catalog.sqlite, or "
                "FACTORY_WAREHOUSE_CATALOG); `factory floor ingest` rebuilds it from the store, "
                "and `factory floor export --duckdb FILE` writes a single-file copy."
            )
        default = path.with_name(f"{path.stem}.files")
        return cls(catalog=f"sqlite:{path}", data=_data(data if data is not None else default))

    @property
    def sqlite_path(self) -> Path | None:
        """The catalog's file when it is SQLite."""
        return Path(self.catalog.removeprefix("sqlite:")) if self.is_sqlite else None

    @property
    def is_sqlite(self) -> bool:
        return self.catalog.startswith("sqlite:")

    def exists(self) -> bool:
        """False only when we can tell there is no catalog yet (a SQLite file)."""
        path = self.sqlite_path
        return path is None or path.is_file()

    def __str__(self) -> str:
        return self.catalog


def _data(data: Path | str) -> str:
    text = str(data)
    if text.startswith("s3://"):
        return text.rstrip("/") + "/"
    return str(Path(text).expanduser().absolute()) + "/"


class _Lakes:
    """This process's DuckDB: extensions loaded once, each catalog attached once."""

    def __init__(self) -> None:
        self._db: duckdb.DuckDBPyConnection | None = None
        self._aliases: dict[str, str] = {}  # catalog → alias
        self._guard = threading.Lock()

    def cursor(self, location: WarehouseLocation) -> duckdb.DuckDBPyConnection:
        """A new connection with ``location`` attached (created if need be) and in use."""
        with self._guard:
            if self._db is None:
                db = duckdb.connect()
                extensions.load(db, "ducklake")
                self._db = db
            # By catalog: its data path is the one it was created with, whatever we say.
            alias = self._aliases.get(location.catalog)
            if alias is None:
                alias = self._attach(self._db, location)
                self._aliases[location.catalog] = alias
            con = self._db.cursor()
        con.execute(f"use {alias}")
        return con

    def _attach(self, db: duckdb.DuckDBPyConnection, location: WarehouseLocation) -> str:
        alias = f"floor_{len(self._aliases)}"
        extensions.load(db, "sqlite" if location.is_sqlite else "postgres")
        if location.data.startswith("s3://"):
            extensions.load_httpfs(db)
            extensions.configure_s3(db)
        options = [f"data_path {sql_string(location.data)}"]
        path = location.sqlite_path
        if path is not None:
            if not path.is_file():
                _create_sqlite_catalog(path)
            # Files are recorded relative to the catalog's own data path: only a new
            # catalog is told one.
            if _is_initialised(path):
                options = []
        if options and not location.data.startswith("s3://"):
            Path(location.data).mkdir(parents=True, exist_ok=True)
        clause = f" ({', '.join(options)})" if options else ""
        uri = sql_string(f"ducklake:{location.catalog}")
        try:
            db.execute(f"attach {uri} as {alias}{clause}")
        except duckdb.Error as error:
            raise FactoryError(f"Cannot open the warehouse {location}: {error}") from None
        return alias


def _create_sqlite_catalog(path: Path) -> None:
    """An empty SQLite catalog in WAL mode, so readers never block a committing writer.

    (In SQLite's default rollback journal, a reader's shared lock makes a commit wait
    and fail with "database is locked"; in WAL a commit never waits for readers.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as con:
        con.execute("pragma journal_mode=wal")
    con.close()


def _is_initialised(path: Path) -> bool:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        found = con.execute(
            "select 1 from sqlite_master where name = 'ducklake_metadata'"
        ).fetchone()
    con.close()
    return found is not None


LAKES = _Lakes()


def transaction(
    con: duckdb.DuckDBPyConnection,
    work: Callable[[duckdb.DuckDBPyConnection], T],
    *,
    patience: float,
    what: str,
) -> T:
    """Run ``work`` in one transaction, again from the start whenever its commit loses a race.

    Backoff doubles from 50 ms up to 2 s, with jitter so two losers do not collide again;
    after ``patience`` seconds of losing, WarehouseBusy. Other errors pass through.
    """
    deadline = time.monotonic() + patience
    pause = 0.05
    tries = 0
    while True:
        tries += 1
        try:
            con.execute("begin")
            result = work(con)
            con.execute("commit")
            return result
        except duckdb.Error as error:
            _rollback(con)
            message = str(error)
            if not any(hint in message.lower() for hint in _RETRYABLE):
                raise
            if time.monotonic() + pause > deadline:
                raise WarehouseBusy(
                    f"{what}: other writers kept committing first for {patience:g} s "
                    f"({tries} tries; last: {message.splitlines()[-1]}). Nothing of it was "
                    "written; run it again."
                ) from None
            log.info("%s lost a commit race (try %d), again in %.2f s", what, tries, pause)
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 2.0)


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("rollback")
    except duckdb.Error:
        return  # no transaction was open any more
