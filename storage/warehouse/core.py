"""``Warehouse``: the floor's DuckLake, its connections, and the verbs analysts use.

Readers never wait: each query sees the last committed snapshot, whatever ingest is
writing. Writers commit optimistically and do a transaction again when another
writer committed first (``lake.transaction``); inside one process they also take
turns, so two flows closing their books together do not race each other for nothing.
"""

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb

from factory.floor import LatencyBudget, PriceCard, load_latency_budget, load_price_card
from storage.ancestry import Ancestry
from storage.objectstore import ObjectStore
from storage.trust import TrustAnchor
from storage.warehouse import export as exporting
from storage.warehouse import ingest as ingesting
from storage.warehouse import lineage, maintenance, models
from storage.warehouse.lake import (
    LAKES,
    WarehouseBusy,
    WarehouseLocation,
    WarehouseMissing,
    transaction,
)
from storage.warehouse.lineage_index import LineageIndex
from storage.warehouse.schema import BOOKKEEPING_TABLES, FACT_TABLES, read_sql, row_counts

_WRITER_LOCKS: dict[str, threading.Lock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()
_SCHEMA_READY: set[str] = set()


def _writer_lock(location: WarehouseLocation) -> threading.Lock:
    """This process's lock for writing the warehouse whose catalog is ``location``'s."""
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(location.catalog, threading.Lock())


class Warehouse:
    """The floor's facts and the SQL models over them, in a DuckLake."""

    def __init__(
        self,
        location: WarehouseLocation | Path | str,
        data: Path | str | None = None,
        *,
        price_card: PriceCard | None = None,
        latency_budget: LatencyBudget | None = None,
        patience: float = 60.0,
    ) -> None:
        self.location = WarehouseLocation.of(location, data)
        self._price_card = price_card
        self._latency_budget = latency_budget
        self.patience = patience

    @property
    def name(self) -> str:
        """The catalog, as reports and errors name the warehouse."""
        return str(self.location)

    def exists(self) -> bool:
        return self.location.exists()

    @property
    def lineage_index(self) -> LineageIndex | None:
        """The SQLite lineage index beside a SQLite catalog (None for PostgreSQL)."""
        path = self.location.sqlite_path
        return None if path is None else LineageIndex.beside(path, self.patience)

    def _index(self, con: duckdb.DuckDBPyConnection | None) -> LineageIndex | None:
        """The index to answer from: when the caller brings no connection and there is one."""
        index = self.lineage_index
        return index if con is None and index is not None and index.exists() else None

    # -- connections -------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self, read_only: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the warehouse in use, closed on exit; never waits for a writer.

        Reading needs an existing warehouse; writing creates it.
        """
        if read_only and not self.exists():
            raise WarehouseMissing(
                f"No floor warehouse at {self.name}: run `factory floor ingest` first "
                "(or pass --warehouse to point at one)."
            )
        con = LAKES.cursor(self.location)
        try:
            yield con
        finally:
            con.close()

    def open_ahead(self) -> None:
        """Load DuckDB's lake extensions and attach this warehouse (creating it) now.

        A process's first touch of a lake costs 0.2-0.5 s of DuckDB work (extension
        loads, the attach), which releases the GIL: done ahead in a thread, it overlaps
        other work and the later ingest or query finds the lake ready.
        """
        LAKES.cursor(self.location).close()

    @contextlib.contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A writing connection on a warehouse whose tables all exist; one writer per process.

        DuckDB would let threads of one process commit at once and fail one of them on
        the conflict; taking turns here saves that retry.
        """
        lock = _writer_lock(self.location)
        if not lock.acquire(timeout=self.patience):
            raise WarehouseBusy(
                f"Another ingest of this process kept the warehouse {self.name} for "
                f"{self.patience:g} s; run it again when it is done."
            )
        try:
            with self.connect(read_only=False) as con:
                if self.location.catalog not in _SCHEMA_READY:
                    self.transact(con, lambda c: c.execute(read_sql("schema")), "creating tables")
                    _SCHEMA_READY.add(self.location.catalog)
                yield con
        finally:
            lock.release()

    def transact(self, con: duckdb.DuckDBPyConnection, work: Any, what: str) -> Any:
        """``work(con)`` in one transaction, redone when another writer commits first."""
        return transaction(con, work, patience=self.patience, what=f"{what} ({self.name})")

    @contextlib.contextmanager
    def _reading(
        self, con: duckdb.DuckDBPyConnection | None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """``con`` when the caller has one open, else a connection of our own."""
        if con is not None:
            yield con
            return
        with self.connect() as opened:
            yield opened

    # -- loading -----------------------------------------------------------------------

    def ingest(
        self,
        store: ObjectStore,
        anchor: TrustAnchor,
        *,
        progress: ingesting.Progress | None = None,
        batch_objects: int = 2000,
        fetch_workers: int = 16,
    ) -> ingesting.IngestReport:
        """Load new events, availability and lineage records from the store; a record loads
        only if it verifies under a key ``anchor``'s root certified."""
        return ingesting.ingest(
            self,
            store,
            anchor,
            progress=progress,
            batch_objects=batch_objects,
            fetch_workers=fetch_workers,
        )

    def config(self) -> tuple[PriceCard, LatencyBudget]:
        """The price card and latency budget this warehouse prices and judges by."""
        return (
            self._price_card or load_price_card(),
            self._latency_budget or load_latency_budget(),
        )

    def refresh_models(self) -> bool:
        """Reload the price card and latency budget tables and recreate every view, in one
        transaction, unless they are current already; True when anything was written."""
        card, budget = self.config()
        with self.writer() as con:
            return self.transact(con, lambda c: models.refresh(c, card, budget), "models")

    def rebuild_models(self) -> None:
        """Compute the materialised models whole, in one transaction: for rows loaded
        other than by ``ingest`` (which keeps them current order by order)."""
        with self.writer() as con:
            self.transact(con, models.rebuild, "rebuilding models")

    def catch_up_lineage_index(self) -> int:
        """Copy into the lineage index the records the lake has and it lacks (every ingest
        does this first; a lake loaded some other way needs it); how many."""
        index = self.lineage_index
        if index is None:
            return 0
        with self.connect() as con:
            con.execute("begin")  # the count and the copy from one snapshot
            count = con.execute("select count(*) from raw_lineage").fetchone()[0]
            copied = index.catch_up(con, count)
            con.execute("commit")
        return copied

    def compact(self, keep_snapshots_days: float = 7.0) -> dict[str, int]:
        """Merge the small Parquet files ingests leave (and rows kept inline in the catalog)
        into bigger ones, expire snapshots older than ``keep_snapshots_days`` (time travel
        reaches back that far) and delete the files only they used, a day after they were
        dropped (a reader may still be scanning them). Data files before and after."""
        with self.writer() as con:
            return maintenance.compact(con, keep_snapshots_days)

    # -- queries -----------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple]]:
        """Column names and rows of one query."""
        with self.connect() as con:
            cursor = con.execute(sql, params or [])
            columns = [d[0] for d in cursor.description or []]
            return columns, cursor.fetchall()

    def counts(self) -> dict[str, int]:
        """Rows per loaded table."""
        with self.connect() as con:
            return row_counts(con, (*FACT_TABLES.values(), *BOOKKEEPING_TABLES))

    def lookup(
        self, digest: str, con: duckdb.DuckDBPyConnection | None = None
    ) -> dict[str, Any] | None:
        """The verified lineage row of one asset, or None.

        Without ``con``: from the lineage index where there is one (it holds what the
        lake held when each ingest batch committed), else from the lake.
        """
        index = self._index(con)
        if index is not None:
            return index.lookup(digest)
        with self._reading(con) as c:
            return lineage.lookup(c, digest)

    def ancestry_edges(
        self, digest: str, con: duckdb.DuckDBPyConnection | None = None, max_depth: int = 64
    ) -> list[tuple[str, int, str, int]]:
        """(asset, position, parent, depth) for every edge above ``digest``; without
        ``con``, from the lineage index where there is one."""
        index = self._index(con)
        if index is not None:
            return index.ancestry_edges(digest, max_depth=max_depth)
        with self._reading(con) as c:
            return lineage.ancestry_edges(c, digest, max_depth)

    def ancestry(self, digest: str, con: duckdb.DuckDBPyConnection | None = None) -> Ancestry:
        """``digest``'s ancestry as ``storage.ancestry.Ancestry``, from verified rows only.

        The same answer ``storage.ancestry.ancestry(store, digest)`` gives from the
        store, at query speed: records were verified when they were ingested. Without
        ``con``, from the lineage index where there is one (milliseconds over ~1M
        records; the lake takes about a second).
        """
        index = self._index(con)
        if index is not None:
            return index.ancestry(digest)
        with self._reading(con) as c:
            return lineage.ancestry(c, digest, where=self.name)

    # -- analyst access ----------------------------------------------------------------

    def export(
        self, target: str | Path, *, progress: ingesting.Progress | None = None
    ) -> exporting.ExportReport:
        """Write every view and fact table as Parquet to a directory or s3://bucket/prefix."""
        return exporting.export(self, target, progress=progress)

    def export_duckdb(
        self, destination: Path | str, *, progress: ingesting.Progress | None = None
    ) -> exporting.ExportReport:
        """One DuckDB file with every table and view, for those who want a single file."""
        return exporting.export_duckdb(self, destination, progress=progress)
