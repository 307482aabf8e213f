"""``Warehouse``: one DuckDB file, its connections and lock, and the verbs analysts use.

DuckDB locks the file against every other process while a writer is open, read-only
ones included. Connections here wait up to ``lock_timeout`` for the lock, writers
are short-lived, and analysts read the Parquet export or a ``snapshot`` copy rather
than the live file while the factory ingests.
"""

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb

from factory.errors import FactoryError
from factory.floor import LatencyBudget, PriceCard, load_latency_budget, load_price_card
from storage.ancestry import Ancestry
from storage.objectstore import ObjectStore
from storage.trust import TrustAnchor
from storage.warehouse import export as exporting
from storage.warehouse import ingest as ingesting
from storage.warehouse import lineage, models
from storage.warehouse.schema import BOOKKEEPING_TABLES, FACT_TABLES, create_tables, row_counts

# Another process holds the file's lock; or, in this process, another thread holds a
# connection opened the other way (read-only vs writing), which DuckDB also refuses.
_BUSY_HINTS = ("Could not set lock", "different configuration than existing connections")


_WRITER_LOCKS: dict[Path, threading.Lock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _writer_lock(path: Path) -> threading.Lock:
    """This process's lock for writing the warehouse file at ``path``."""
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(path.resolve(), threading.Lock())


class WarehouseMissing(FactoryError):
    """There is no warehouse file where one was expected."""


class WarehouseBusy(FactoryError):
    """Another process holds the warehouse file's lock."""


class Warehouse:
    """One DuckDB file with the floor's facts and the SQL models over them."""

    def __init__(
        self,
        path: Path | str,
        *,
        price_card: PriceCard | None = None,
        latency_budget: LatencyBudget | None = None,
        lock_timeout: float = 30.0,
    ) -> None:
        self.path = Path(path).expanduser()
        self._price_card = price_card
        self._latency_budget = latency_budget
        self.lock_timeout = lock_timeout

    def exists(self) -> bool:
        return self.path.is_file()

    # -- connections -------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self, read_only: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the file, closed on exit; waits up to lock_timeout for a lock.

        Read-only connections need an existing warehouse; a writer creates it.
        """
        if read_only and not self.exists():
            raise WarehouseMissing(
                f"No floor warehouse at {self.path}: run `factory floor ingest` first "
                "(or pass --warehouse to point at one)."
            )
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.nullcontext() if read_only else self._writing_turn():
            con = self._open(read_only)
            try:
                yield con
            finally:
                con.close()

    @contextlib.contextmanager
    def _writing_turn(self) -> Iterator[None]:
        """One writer at a time in this process, as between processes.

        DuckDB lets threads of one process write the same file at once, then fails one
        of them on a conflict (two flows closing their books together).
        """
        lock = _writer_lock(self.path)
        if not lock.acquire(timeout=self.lock_timeout):
            raise self._busy()
        try:
            yield
        finally:
            lock.release()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except (duckdb.IOException, duckdb.ConnectionException) as error:
                if not any(hint in str(error) for hint in _BUSY_HINTS):
                    raise FactoryError(f"Cannot open the warehouse {self.path}: {error}") from None
                if time.monotonic() >= deadline:
                    raise self._busy() from None
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    def _busy(self) -> "WarehouseBusy":
        return WarehouseBusy(
            f"The warehouse {self.path} is locked by another process (an ingest, or an open "
            f"DuckDB session) and stayed locked for {self.lock_timeout:g} s. Read the Parquet "
            "export instead of the live file, or retry when it is free."
        )

    @contextlib.contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A writing connection on a file whose tables all exist."""
        with self.connect(read_only=False) as con:
            create_tables(con)
            yield con

    @contextlib.contextmanager
    def _reading(
        self, con: duckdb.DuckDBPyConnection | None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """``con`` when the caller has one open, else a read-only connection of our own."""
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

    def refresh_models(self, con: duckdb.DuckDBPyConnection | None = None) -> None:
        """Reload the price card and latency budget tables and recreate every view."""
        card = self._price_card or load_price_card()
        budget = self._latency_budget or load_latency_budget()
        if con is not None:
            models.refresh(con, card, budget)
            return
        with self.writer() as opened:
            models.refresh(opened, card, budget)

    # -- queries -----------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple]]:
        """Column names and rows of one read-only query."""
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
        """The verified lineage row of one asset, or None."""
        with self._reading(con) as c:
            return lineage.lookup(c, digest)

    def ancestry_edges(
        self, digest: str, con: duckdb.DuckDBPyConnection | None = None, max_depth: int = 64
    ) -> list[tuple[str, int, str, int]]:
        """(asset, position, parent, depth) for every edge above ``digest``."""
        with self._reading(con) as c:
            return lineage.ancestry_edges(c, digest, max_depth)

    def ancestry(self, digest: str, con: duckdb.DuckDBPyConnection | None = None) -> Ancestry:
        """``digest``'s ancestry as ``storage.ancestry.Ancestry``, from verified rows only.

        The same answer ``storage.ancestry.ancestry(store, digest)`` gives from the
        store, at query speed: records were verified when they were ingested.
        """
        with self._reading(con) as c:
            return lineage.ancestry(c, digest, where=str(self.path))

    # -- analyst access ----------------------------------------------------------------

    def export(
        self, target: str | Path, *, progress: ingesting.Progress | None = None
    ) -> exporting.ExportReport:
        """Write every mart and fact table as Parquet to a directory or s3://bucket/prefix."""
        return exporting.export(self, target, progress=progress)

    def snapshot(self, destination: Path | str) -> Path:
        """A consistent copy of the warehouse file that analysts may open in DuckDB.

        Holds the writer lock only for the checkpoint and the copy.
        """
        destination = Path(destination).expanduser()
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.partial")
        with self.writer() as con:
            con.execute("checkpoint")
            shutil.copyfile(self.path, partial)
        os.replace(partial, destination)
        return destination
