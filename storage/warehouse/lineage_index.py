"""The lineage index: verified lineage records in SQLite beside the catalog, for ancestry
at index speed.

A DuckLake table has no index and every lake query reads the catalog first, so one
ancestry over ~1M records takes about a second on the lake (bench/RESULTS.md). Ingest
therefore writes each record it loads into the lake into this SQLite file too
(``storage/sql/lineage_index.sql``: records keyed by asset digest, edges clustered by
child and indexed by parent), where a walk is a recursive CTE of a few B-tree probes.

Ingest writes a batch here only after the lake committed it, so the index holds only
records the lake holds: a record not ingested yet is absent, never half there (a
record's row and its edges go in one SQLite transaction). Every ingest first copies
whatever the lake has and the index lacks (a crash between the two commits, a lake
older than the index). WAL mode: a reader never blocks the ingest, nor it a reader.
Only a SQLite catalog has an index (a PostgreSQL fleet's readers query the lake).
"""

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from storage.ancestry import Ancestry
from storage.warehouse.lineage import DETAIL_COLUMNS, build, digest_literal, shallowest
from storage.warehouse.schema import read_sql, sql_string

# raw_lineage's columns, in the index's order (storage/sql/lineage_index.sql).
COLUMNS = (
    "asset_digest", "record_digest", "stage", "stage_version", "order_id", "flow_run_id",
    "task_run_id", "media_type", "size_bytes", "uri", "model_name", "weights_fingerprint",
    "training_provenance", "royalty_routing", "parameters", "device_class", "device_seconds",
    "started", "ended", "key_id", "reused_from", "package_version", "git_commit", "source_uri",
)  # fmt: skip
PARENT_COLUMNS = ("asset_digest", "position", "parent_digest", "parent_record_digest")
_JSON = ("training_provenance", "royalty_routing", "parameters")
_TIMES = ("started", "ended")

# The walk up from one asset (storage/sql/README.md shows analysts one like it).
_EDGES = """
with recursive walk(asset_digest, position, parent_digest, depth) as (
    select asset_digest, position, parent_digest, 1
    from lineage_parents
    where asset_digest = ?
    union
    select parents.asset_digest, parents.position, parents.parent_digest, walk.depth + 1
    from walk
    join lineage_parents as parents on parents.asset_digest = walk.parent_digest
    where walk.depth < ?
)
select * from walk
"""


class LineageIndex:
    """The SQLite lineage index of one warehouse (``<catalog>.lineage.sqlite``)."""

    def __init__(self, path: Path, patience: float = 60.0) -> None:
        self.path = path
        self.patience = patience

    @classmethod
    def beside(cls, catalog: Path, patience: float = 60.0) -> "LineageIndex":
        """The index of the SQLite catalog ``catalog``."""
        return cls(catalog.with_name(f"{catalog.stem}.lineage.sqlite"), patience)

    def exists(self) -> bool:
        return self.path.is_file()

    # -- reading -----------------------------------------------------------------------

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection; never waits for the ingest (WAL)."""
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def _reading(self, con: sqlite3.Connection | None) -> Iterator[sqlite3.Connection]:
        if con is not None:
            yield con
            return
        with self.reader() as opened:
            yield opened

    def lookup(self, digest: str, con: sqlite3.Connection | None = None) -> dict[str, Any] | None:
        """The record of one asset, as the lake's ``raw_lineage`` row; None if absent."""
        digest_literal(digest)  # refuses what is not a digest
        with self._reading(con) as c:
            row = c.execute(
                f"select {', '.join(COLUMNS)} from lineage where asset_digest = ?", (digest,)
            ).fetchone()
        if row is None:
            return None
        found = dict(zip(COLUMNS, row, strict=True))
        for column in _TIMES:
            found[column] = datetime.fromisoformat(found[column])
        return found

    def ancestry_edges(
        self, digest: str, con: sqlite3.Connection | None = None, max_depth: int = 64
    ) -> list[tuple[str, int, str, int]]:
        """(asset, position, parent, depth) for every edge above ``digest``."""
        digest_literal(digest)
        with self._reading(con) as c:
            return shallowest(c.execute(_EDGES, (digest, int(max_depth))).fetchall())

    def ancestry(self, digest: str, con: sqlite3.Connection | None = None) -> Ancestry:
        """``digest``'s ancestry from the index; IntegrityError if a record is absent.

        ``con``, when given, must not be inside a transaction (``reader`` gives such).
        """
        with self._reading(con) as c:
            c.execute("begin")  # the edges and the records from one snapshot
            try:
                edges = self.ancestry_edges(digest, c)
                digests = sorted({digest, *(edge[2] for edge in edges)})
                marks = ", ".join("?" * len(digests))
                rows = c.execute(
                    f"select {DETAIL_COLUMNS} from lineage where asset_digest in ({marks})",
                    digests,
                ).fetchall()
            finally:
                c.execute("commit")
        return build(digest, edges, {row[0]: row for row in rows}, f"index {self.path}")

    def records(self) -> int:
        """Records in the index (0 when there is none yet)."""
        if not self.exists():
            return 0
        with self.reader() as con:
            found = con.execute("select records from index_state").fetchone()
        return found[0] if found else 0

    # -- writing -----------------------------------------------------------------------

    def _create(self) -> None:
        """The empty index, in WAL mode, made aside and linked into place whole, so a
        reader never finds a file without its tables (and two creators keep one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        draft = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        draft.unlink(missing_ok=True)
        con = sqlite3.connect(draft, isolation_level=None)
        try:
            con.execute("pragma journal_mode=wal")
            con.executescript(read_sql("lineage_index"))
        finally:
            con.close()
        try:
            os.link(draft, self.path)
        except FileExistsError:
            pass  # another ingest made it first
        finally:
            draft.unlink()

    @contextlib.contextmanager
    def _writer(self) -> Iterator[sqlite3.Connection]:
        if not self.exists():
            self._create()
        con = sqlite3.connect(self.path, timeout=self.patience, isolation_level=None)
        try:
            # WAL with synchronous=normal loses nothing when a process dies; a power cut
            # may lose the last commits, which the next ingest's catch-up copies again.
            con.execute("pragma synchronous=normal")
            yield con
        finally:
            con.close()

    def add(self, records: list[tuple], parents: list[tuple]) -> int:
        """Records (``raw_lineage`` rows as ingest makes them, ``COLUMNS`` in order) and
        their edges (``PARENT_COLUMNS``), each once; how many records were new. One
        transaction: a record and its edges appear together."""
        return self._insert([tuple(map(_stored, _KINDS, row)) for row in records], parents)

    def _insert(self, records: list[tuple], parents: list[tuple]) -> int:
        """``add`` for records already as the index stores them."""
        if not records:
            return 0
        with self._writer() as con:
            con.execute("begin immediate")
            try:
                before = con.total_changes
                con.executemany(
                    f"insert or ignore into lineage values ({', '.join('?' * len(COLUMNS))})",
                    records,
                )
                added = con.total_changes - before
                con.executemany(
                    "insert or ignore into lineage_parents values (?, ?, ?, ?)", parents
                )
                con.execute(
                    "insert into index_state select 0 where not exists (select 1 from index_state)"
                )
                con.execute("update index_state set records = records + ?", (added,))
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
        return added

    def catch_up(
        self, lake: duckdb.DuckDBPyConnection, lake_records: int, chunk: int = 50_000
    ) -> int:
        """Copy the records the lake (``lake``, holding ``lake_records``) has and the index
        lacks, ``chunk`` records a transaction, in digest order (B-tree appends); how
        many. Nothing to do, the usual case, costs one small read of the index."""
        have = self.records()
        if have >= lake_records:
            return 0
        lake_records = lake.execute("select count(*) from raw_lineage").fetchone()[0]
        indexed = (
            f"sqlite_scan({sql_string(str(self.path))}, 'lineage')"
            if self.exists()
            else "(select null::varchar as asset_digest where false)"
        )
        # Formatted by DuckDB as the index stores them (what ``_stored`` does in Python).
        formatted = ", ".join(
            f"{c}::varchar as {c}"
            if c in _JSON
            else f"replace({c}::varchar, ' ', 'T') as {c}"
            if c in _TIMES
            else c
            for c in COLUMNS
        )
        chunks = (lake_records - have) // chunk + 1
        todo, edges = "temp.main.lineage_index_todo", "temp.main.lineage_index_todo_edges"
        lake.execute(
            f"create or replace temp table lineage_index_todo as "
            f"with indexed as (select asset_digest from {indexed}) "
            f"select ntile({chunks}) over (order by asset_digest) as chunk, {formatted} "
            "from raw_lineage where asset_digest not in (select asset_digest from indexed)"
        )
        copied = 0
        try:
            lake.execute(
                "create or replace temp table lineage_index_todo_edges as "
                f"select todo.chunk, {', '.join(f'parents.{c}' for c in PARENT_COLUMNS)} "
                f"from raw_lineage_parents as parents join {todo} as todo using (asset_digest)"
            )
            for number in range(1, chunks + 1):
                records = lake.execute(
                    f"select * exclude (chunk) from {todo} where chunk = {number} "
                    "order by asset_digest"
                ).fetchall()
                parents = lake.execute(
                    f"select * exclude (chunk) from {edges} where chunk = {number} "
                    "order by asset_digest, position"
                ).fetchall()
                copied += self._insert(records, parents)
        finally:
            lake.execute(f"drop table if exists {todo}")
            lake.execute(f"drop table if exists {edges}")
        return copied


_KINDS = tuple("json" if c in _JSON else "time" if c in _TIMES else "" for c in COLUMNS)


def _stored(kind: str, value: Any) -> Any:
    """A value as the index stores it: JSON as text, timestamps as ISO 8601 text."""
    if value is None or not kind:
        return value
    if kind == "json":
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return value.isoformat() if isinstance(value, datetime) else str(value)
