"""The factory floor warehouse: floor events, availability and verified lineage in DuckDB.

``Warehouse(path).ingest(store)`` copies what the factory wrote to the object store
into one DuckDB file, incrementally and idempotently:

* ``floor/events/…jsonl`` → ``raw_events`` (one row per event, key ``event_id``)
* ``floor/availability/…jsonl`` → ``raw_availability``
* ``lineage/records/…dsse.json`` → ``raw_lineage`` (key: asset digest) and
  ``raw_lineage_parents`` (indexed both ways), each record's DSSE signature
  verified against the keys published in the store first. A record that does not
  verify is never loaded: it is listed in the ingest report and in
  ``rejected_objects``, and tried again by the next ingest.

Every loaded object's URI goes into ``ingested_objects``, so the next ingest fetches
only new objects; rows go in with ``ON CONFLICT DO NOTHING``, so loading anything
twice changes nothing. Objects are fetched and verified with no database
connection open; each batch of rows is then written by a short-lived writer
connection, so the file is locked only while rows go in.

On top sit the SQL models in ``storage/sql`` (one file per view, staging then
intermediate then marts, each a chain of named CTEs ending in ``select * from
final``), and three small tables loaded from the config files: ``price_card``,
``royalty_rate`` and ``latency_budget``. ``storage/sql/README.md`` documents every
view for analysts.

DuckDB locks the file against every other process while a writer is open, read-only
ones included. Analysts therefore read the Parquet export (``export``, to a
directory or to S3 through DuckDB's httpfs) or a ``snapshot`` copy, never the live
file while the factory ingests.
"""

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import duckdb
from pydantic import BaseModel, Field

from factory.assets import sha256_hex
from factory.errors import BadInput, FactoryError, IntegrityError, ObjectNotFound
from factory.floor import (
    LatencyBudget,
    PriceCard,
    load_latency_budget,
    load_price_card,
)
from factory.lineage import LineageRecord, ModelInfo, verify_record
from storage.floor_events import (
    AVAILABILITY_PREFIX,
    EVENTS_PREFIX,
    SUFFIX,
    parse_availability,
    parse_events,
)
from storage.keys import load_public_keys
from storage.lineage import RECORDS_PREFIX
from storage.objectstore import ObjectStore

SQL_DIR = Path(__file__).with_name("sql")

# Views in dependency order: each file creates the view named after it.
MODELS: tuple[str, ...] = (
    "staging/stg_events",
    "staging/stg_availability",
    "staging/stg_lineage",
    "staging/stg_lineage_parents",
    "intermediate/int_events_attributed",
    "intermediate/int_segment_passes",
    "intermediate/int_deliverable_models",
    "marts/yield",
    "marts/utilization",
    "marts/cost_per_delivered_minute",
    "marts/cache_savings",
    "marts/royalties",
    "marts/stage_latency",
)
MARTS: tuple[str, ...] = tuple(m.split("/")[1] for m in MODELS if m.startswith("marts/"))
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

_LOCK_HINT = "Could not set lock"
_DIGEST = re.compile(r"[0-9a-f]{64}")
_LINEAGE_SUFFIX = ".dsse.json"

_SCHEMA = """
create table if not exists raw_events (
    event_id varchar primary key,
    order_id varchar not null,
    flow_run_id varchar not null,
    task_run_id varchar not null,
    segment_index integer,
    stage varchar not null,
    attempt integer not null,
    model varchar,
    device_class varchar not null,
    worker_id varchar not null,
    started timestamp not null,
    ended timestamp not null,
    device_seconds double not null,
    status varchar not null,
    cache_hit boolean not null,
    bytes_in bigint not null,
    bytes_out bigint not null,
    output_digest varchar,
    delivered_seconds double not null,
    source_uri varchar not null
);
create table if not exists raw_availability (
    worker_id varchar not null,
    device_class varchar not null,
    up_from timestamp not null,
    up_to timestamp not null,
    source_uri varchar not null,
    primary key (worker_id, up_from, up_to)
);
create table if not exists raw_lineage (
    asset_digest varchar primary key,
    record_digest varchar not null,
    stage varchar not null,
    stage_version varchar not null,
    order_id varchar not null,
    flow_run_id varchar not null,
    task_run_id varchar not null,
    media_type varchar not null,
    size_bytes bigint not null,
    uri varchar not null,
    model_name varchar,
    weights_fingerprint varchar,
    training_provenance json,
    royalty_routing json,
    parameters json,
    device_class varchar not null,
    device_seconds double not null,
    started timestamp not null,
    ended timestamp not null,
    key_id varchar not null,
    reused_from varchar,
    package_version varchar,
    git_commit varchar,
    source_uri varchar not null
);
create table if not exists raw_lineage_parents (
    asset_digest varchar not null,
    position integer not null,
    parent_digest varchar not null,
    parent_record_digest varchar not null,
    primary key (asset_digest, position)
);
create index if not exists raw_lineage_parents_child on raw_lineage_parents (asset_digest);
create index if not exists raw_lineage_parents_parent on raw_lineage_parents (parent_digest);
create index if not exists raw_lineage_record on raw_lineage (record_digest);
create table if not exists ingested_objects (
    uri varchar primary key,
    kind varchar not null,
    rows integer not null,
    ingested_at timestamp not null
);
create table if not exists rejected_objects (
    uri varchar primary key,
    kind varchar not null,
    reason varchar not null,
    seen_at timestamp not null
);
"""

_COLUMNS: dict[str, dict[str, str]] = {
    "raw_events": {
        "event_id": "VARCHAR",
        "order_id": "VARCHAR",
        "flow_run_id": "VARCHAR",
        "task_run_id": "VARCHAR",
        "segment_index": "INTEGER",
        "stage": "VARCHAR",
        "attempt": "INTEGER",
        "model": "VARCHAR",
        "device_class": "VARCHAR",
        "worker_id": "VARCHAR",
        "started": "TIMESTAMP",
        "ended": "TIMESTAMP",
        "device_seconds": "DOUBLE",
        "status": "VARCHAR",
        "cache_hit": "BOOLEAN",
        "bytes_in": "BIGINT",
        "bytes_out": "BIGINT",
        "output_digest": "VARCHAR",
        "delivered_seconds": "DOUBLE",
        "source_uri": "VARCHAR",
    },
    "raw_availability": {
        "worker_id": "VARCHAR",
        "device_class": "VARCHAR",
        "up_from": "TIMESTAMP",
        "up_to": "TIMESTAMP",
        "source_uri": "VARCHAR",
    },
    "raw_lineage": {
        "asset_digest": "VARCHAR",
        "record_digest": "VARCHAR",
        "stage": "VARCHAR",
        "stage_version": "VARCHAR",
        "order_id": "VARCHAR",
        "flow_run_id": "VARCHAR",
        "task_run_id": "VARCHAR",
        "media_type": "VARCHAR",
        "size_bytes": "BIGINT",
        "uri": "VARCHAR",
        "model_name": "VARCHAR",
        "weights_fingerprint": "VARCHAR",
        "training_provenance": "JSON",
        "royalty_routing": "JSON",
        "parameters": "JSON",
        "device_class": "VARCHAR",
        "device_seconds": "DOUBLE",
        "started": "TIMESTAMP",
        "ended": "TIMESTAMP",
        "key_id": "VARCHAR",
        "reused_from": "VARCHAR",
        "package_version": "VARCHAR",
        "git_commit": "VARCHAR",
        "source_uri": "VARCHAR",
    },
    "raw_lineage_parents": {
        "asset_digest": "VARCHAR",
        "position": "INTEGER",
        "parent_digest": "VARCHAR",
        "parent_record_digest": "VARCHAR",
    },
    "ingested_objects": {
        "uri": "VARCHAR",
        "kind": "VARCHAR",
        "rows": "INTEGER",
        "ingested_at": "TIMESTAMP",
    },
    "rejected_objects": {
        "uri": "VARCHAR",
        "kind": "VARCHAR",
        "reason": "VARCHAR",
        "seen_at": "TIMESTAMP",
    },
}

Progress = Callable[[str, int, int], None]
T = TypeVar("T")


class WarehouseMissing(FactoryError):
    """There is no warehouse file where one was expected."""


class WarehouseBusy(FactoryError):
    """Another process holds the warehouse file's lock."""


class Rejected(BaseModel):
    uri: str
    kind: str
    reason: str


class IngestReport(BaseModel):
    """What one ingest found and loaded."""

    store: str
    warehouse: str
    listed: dict[str, int] = Field(description="Objects in the store, by kind")
    loaded: dict[str, int] = Field(description="New objects loaded now, by kind")
    rows: dict[str, int] = Field(description="Rows read from the new objects, by table")
    added: dict[str, int] = Field(description="Rows new to the warehouse, by table")
    rejected: list[Rejected] = Field(default=[], description="Objects that were not loaded")
    seconds: float

    @property
    def loaded_objects(self) -> int:
        return sum(self.loaded.values())


class ExportReport(BaseModel):
    target: str
    tables: dict[str, int] = Field(description="Exported name → rows")
    seconds: float


def _digest_literal(digest: str) -> str:
    """A SQL literal for an asset digest, after checking it is one (64 lowercase hex)."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise BadInput(f"{digest!r} is not an asset digest (64 lowercase hex characters).")
    return f"'{digest}'"


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _naive_utc(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat()


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Batch:
    """Rows for each table, gathered from one batch of objects, then loaded in one go."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in _COLUMNS}

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.rows[table].append(row)

    def load(self, con: duckdb.DuckDBPyConnection, directory: Path) -> None:
        for table, rows in self.rows.items():
            if not rows:
                continue
            path = directory / f"{table}.jsonl"
            with open(path, "w", encoding="utf-8") as file:
                for row in rows:
                    file.write(json.dumps(row, separators=(",", ":")))
                    file.write("\n")
            columns = ", ".join(f"{name}: '{kind}'" for name, kind in _COLUMNS[table].items())
            conflict = (
                "on conflict (uri) do update set reason = excluded.reason, "
                "seen_at = excluded.seen_at"
                if table == "rejected_objects"
                else "on conflict do nothing"
            )
            con.execute(
                f"insert into {table} by name select * from read_json("
                f"{_sql_string(str(path))}, format = 'newline_delimited', "
                f"columns = {{{columns}}}) {conflict}"
            )


def _event_row(event: Any, uri: str) -> dict[str, Any]:
    row = event.model_dump(mode="json")
    row["started"] = _naive_utc(event.started)
    row["ended"] = _naive_utc(event.ended)
    row["source_uri"] = uri
    return row


def _lineage_rows(record: LineageRecord, envelope: bytes, uri: str) -> list[tuple[str, dict]]:
    model = record.model
    rows: list[tuple[str, dict]] = [
        (
            "raw_lineage",
            {
                "asset_digest": record.asset.digest,
                "record_digest": sha256_hex(envelope),
                "stage": record.stage.name,
                "stage_version": record.stage.version,
                "order_id": record.order_id,
                "flow_run_id": record.flow_run_id,
                "task_run_id": record.task_run_id,
                "media_type": record.asset.media_type,
                "size_bytes": record.asset.size,
                "uri": record.asset.uri,
                "model_name": model.name if model else None,
                "weights_fingerprint": model.weights_fingerprint if model else None,
                "training_provenance": (
                    [p.model_dump(mode="json") for p in model.training_provenance]
                    if model
                    else None
                ),
                "royalty_routing": (
                    [r.model_dump(mode="json") for r in model.royalty_routing] if model else None
                ),
                "parameters": record.parameters,
                "device_class": record.device_class,
                "device_seconds": record.device_seconds,
                "started": _naive_utc(record.started),
                "ended": _naive_utc(record.ended),
                "key_id": record.key_id,
                "reused_from": record.reused_from,
                "package_version": record.code.package_version,
                "git_commit": record.code.git_commit,
                "source_uri": uri,
            },
        )
    ]
    for position, parent in enumerate(record.parents):
        rows.append(
            (
                "raw_lineage_parents",
                {
                    "asset_digest": record.asset.digest,
                    "position": position,
                    "parent_digest": parent.digest,
                    "parent_record_digest": parent.record_digest,
                },
            )
        )
    return rows


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
        con = self._open(read_only)
        try:
            yield con
        finally:
            con.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as error:
                if _LOCK_HINT not in str(error):
                    raise FactoryError(f"Cannot open the warehouse {self.path}: {error}") from None
                if time.monotonic() >= deadline:
                    raise WarehouseBusy(
                        f"The warehouse {self.path} is locked by another process (an ingest, "
                        f"or an open DuckDB session) and stayed locked for "
                        f"{self.lock_timeout:g} s. Read the Parquet export instead of the live "
                        "file, or retry when it is free."
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    @contextlib.contextmanager
    def _writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.connect(read_only=False) as con:
            con.execute(_SCHEMA)
            yield con

    # -- ingest ------------------------------------------------------------------------

    def ingest(
        self,
        store: ObjectStore,
        *,
        progress: Progress | None = None,
        batch_objects: int = 2000,
        fetch_workers: int = 16,
    ) -> IngestReport:
        """Load new events, availability and verified lineage records from the store."""
        started = time.perf_counter()
        notify = progress or (lambda phase, done, total: None)
        notify("list", 0, 0)
        listed = self._list(store)
        with self._writer() as con:
            known = {row[0] for row in con.execute("select uri from ingested_objects").fetchall()}
            before = _row_counts(con)
            self._refresh_models(con)
        todo = [
            (kind, key, store.uri(key))
            for kind, keys in listed.items()
            for key in keys
            if store.uri(key) not in known
        ]
        loaded = dict.fromkeys(listed, 0)
        rows = {"raw_events": 0, "raw_availability": 0, "raw_lineage": 0, "raw_lineage_parents": 0}
        rejected: list[Rejected] = []
        public_keys = (
            load_public_keys(store) if any(kind == "lineage" for kind, _, _ in todo) else {}
        )
        notify("ingest", 0, len(todo))
        done = 0
        with (
            ThreadPoolExecutor(max_workers=max(1, fetch_workers)) as pool,
            tempfile.TemporaryDirectory(prefix="floor-ingest-") as scratch,
        ):
            for chunk in _chunks(todo, batch_objects):
                batch = _Batch()
                fetched = pool.map(lambda item: _fetch(store, item[1]), chunk)
                for (kind, key, uri), data in zip(chunk, fetched, strict=True):
                    if data is None:
                        continue  # removed since it was listed
                    try:
                        count = self._parse(kind, key, uri, data, public_keys, batch, rows)
                    except IntegrityError as error:
                        rejected.append(Rejected(uri=uri, kind=kind, reason=str(error)))
                        batch.add(
                            "rejected_objects",
                            {"uri": uri, "kind": kind, "reason": str(error), "seen_at": _now()},
                        )
                        continue
                    loaded[kind] += 1
                    batch.add(
                        "ingested_objects",
                        {"uri": uri, "kind": kind, "rows": count, "ingested_at": _now()},
                    )
                with self._writer() as con:
                    con.execute("begin")
                    batch.load(con, Path(scratch))
                    con.execute("commit")
                done += len(chunk)
                notify("ingest", done, len(todo))
        with self._writer() as con:
            # What verifies now (a key published late) is no longer rejected.
            con.execute(
                "delete from rejected_objects where uri in (select uri from ingested_objects)"
            )
            after = _row_counts(con)
        return IngestReport(
            store=store.url,
            warehouse=str(self.path),
            listed={kind: len(keys) for kind, keys in listed.items()},
            loaded=loaded,
            rows=rows,
            added={table: after[table] - before[table] for table in after},
            rejected=rejected,
            seconds=time.perf_counter() - started,
        )

    @staticmethod
    def _list(store: ObjectStore) -> dict[str, list[str]]:
        return {
            "events": [k for k in store.list(EVENTS_PREFIX) if k.endswith(SUFFIX)],
            "availability": [k for k in store.list(AVAILABILITY_PREFIX) if k.endswith(SUFFIX)],
            "lineage": [k for k in store.list(RECORDS_PREFIX) if k.endswith(_LINEAGE_SUFFIX)],
        }

    @staticmethod
    def _parse(
        kind: str,
        key: str,
        uri: str,
        data: bytes,
        public_keys: dict,
        batch: _Batch,
        rows: dict[str, int],
    ) -> int:
        if kind == "events":
            events = parse_events(data, uri)
            for event in events:
                batch.add("raw_events", _event_row(event, uri))
            rows["raw_events"] += len(events)
            return len(events)
        if kind == "availability":
            intervals = parse_availability(data, uri)
            for interval in intervals:
                batch.add(
                    "raw_availability",
                    {
                        "worker_id": interval.worker_id,
                        "device_class": interval.device_class,
                        "up_from": _naive_utc(interval.up_from),
                        "up_to": _naive_utc(interval.up_to),
                        "source_uri": uri,
                    },
                )
            rows["raw_availability"] += len(intervals)
            return len(intervals)
        digest = key.rsplit("/", 1)[-1].removesuffix(_LINEAGE_SUFFIX)
        record = verify_record(data, public_keys, expected_digest=digest)
        record_rows = _lineage_rows(record, data, uri)
        for table, row in record_rows:
            batch.add(table, row)
            rows[table] += 1
        return len(record_rows)

    # -- models and config -------------------------------------------------------------

    def refresh_models(self) -> None:
        """Reload the price card and latency budget tables and recreate every view."""
        with self._writer() as con:
            self._refresh_models(con)

    def _refresh_models(self, con: duckdb.DuckDBPyConnection) -> None:
        card = self._price_card or load_price_card()
        budget = self._latency_budget or load_latency_budget()
        con.execute("begin")
        con.execute(
            "create or replace table price_card ("
            "device_class varchar primary key, per_device_hour double not null, "
            "currency varchar not null)"
        )
        con.executemany(
            "insert into price_card values (?, ?, ?)",
            [(device, rate, card.currency) for device, rate in card.device_hour.items()],
        )
        con.execute(
            "create or replace table royalty_rate ("
            "per_delivered_minute double not null, currency varchar not null)"
        )
        con.execute(
            "insert into royalty_rate values (?, ?)",
            [card.royalty_per_delivered_minute, card.currency],
        )
        con.execute(
            "create or replace table latency_budget ("
            "stage varchar primary key, p95_budget_ms double not null)"
        )
        con.executemany(
            "insert into latency_budget values (?, ?)",
            [*budget.stages.items(), ("end_to_end", budget.end_to_end_ms)],
        )
        for model in MODELS:
            name = model.split("/")[1]
            sql = (SQL_DIR / f"{model}.sql").read_text(encoding="utf-8")
            con.execute(f"create or replace view {name} as\n{sql}")
        con.execute("commit")

    # -- queries -----------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple]]:
        """Column names and rows of one read-only query."""
        with self.connect() as con:
            cursor = con.execute(sql, params or [])
            columns = [d[0] for d in cursor.description or []]
            return columns, cursor.fetchall()

    def counts(self) -> dict[str, int]:
        """Rows per loaded table."""
        tables = [*FACT_TABLES.values(), "ingested_objects", "rejected_objects"]
        with self.connect() as con:
            return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}

    def lookup(
        self, digest: str, con: duckdb.DuckDBPyConnection | None = None
    ) -> dict[str, Any] | None:
        """The verified lineage row of one asset, or None."""
        with _maybe(self, con) as c:
            cursor = c.execute(
                f"select * from raw_lineage where asset_digest = {_digest_literal(digest)}"
            )
            row = cursor.fetchone()
            if row is None:
                return None
            return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def ancestry_edges(
        self, digest: str, con: duckdb.DuckDBPyConnection | None = None, max_depth: int = 64
    ) -> list[tuple[str, int, str, int]]:
        """(asset, position, parent, depth) for every edge above ``digest``, via WITH RECURSIVE.

        The recursive step joins on raw_lineage_parents.asset_digest, whose index DuckDB
        probes with the handful of digests of the previous level (join filter pushdown),
        so each level costs a few index lookups rather than a scan.
        """
        # Digests go in as checked literals: a parameterised execute costs the duckdb
        # module two failed `import pandas` lookups, more than the query itself here.
        start = _digest_literal(digest)
        with _maybe(self, con) as c:
            rows = c.execute(
                f"""
                with recursive walk(asset_digest, position, parent_digest, depth) as (
                    select asset_digest, position, parent_digest, 1
                    from raw_lineage_parents
                    where asset_digest = {start}
                    union
                    select parents.asset_digest, parents.position, parents.parent_digest,
                        walk.depth + 1
                    from walk
                    join raw_lineage_parents as parents
                        on parents.asset_digest = walk.parent_digest
                    where walk.depth < {int(max_depth)}
                )
                select * from walk
                """
            ).fetchall()
        # An edge reached along two paths comes back at both depths: keep the shallower.
        # (Grouping in SQL instead costs more than the whole walk.)
        shallowest: dict[tuple[str, int, str], int] = {}
        for asset, position, parent, depth in rows:
            key = (asset, position, parent)
            shallowest[key] = min(depth, shallowest.get(key, depth))
        return sorted(
            ((a, p, parent, d) for (a, p, parent), d in shallowest.items()),
            key=lambda edge: (edge[3], edge[0], edge[1]),
        )

    def ancestry(self, digest: str, con: duckdb.DuckDBPyConnection | None = None) -> Any:
        """``digest``'s ancestry as ``storage.ancestry.Ancestry``, from verified rows only.

        The same answer ``storage.ancestry.ancestry(store, digest)`` gives from the
        store, at query speed: records were verified when they were ingested.
        """
        from storage.ancestry import AncestryNode, summarise

        with _maybe(self, con) as c:
            edges = self.ancestry_edges(digest, c)
            digests = sorted({digest, *(edge[2] for edge in edges)})
            literals = ", ".join(_digest_literal(each) for each in digests)
            cursor = c.execute(
                "select asset_digest, stage, media_type, model_name, weights_fingerprint, "
                "training_provenance, royalty_routing, parameters "
                f"from raw_lineage where asset_digest in ({literals})"
            )
            details = {row[0]: row for row in cursor.fetchall()}
        missing = [d for d in digests if d not in details]
        if missing:
            where = "its own record" if digest in missing else f"ancestor {missing[0]}"
            raise IntegrityError(
                f"lineage of {digest} is incomplete in the warehouse {self.path}: no verified "
                f"record for {where}. It was rejected at ingest or not ingested yet: run "
                "`factory floor ingest`, and `factory verify` for the full report."
            )
        parents: dict[str, list[tuple[int, str]]] = {}
        for asset, position, parent, _ in edges:
            parents.setdefault(asset, []).append((position, parent))
        nodes: dict[str, AncestryNode] = {}
        renders: list[tuple[ModelInfo, float]] = []

        def node(current: str) -> AncestryNode:
            if current in nodes:
                return nodes[current]
            _, stage, media_type, model, fingerprint, provenance, routing, params = details[current]
            parameters = json.loads(params) if params else {}
            made = AncestryNode(
                digest=current,
                stage=stage,
                media_type=media_type,
                model=model,
                parameters=parameters,
            )
            nodes[current] = made
            if model is not None:
                info = ModelInfo(
                    name=model,
                    weights_fingerprint=fingerprint,
                    training_provenance=json.loads(provenance),
                    royalty_routing=json.loads(routing),
                )
                renders.append((info, _render_seconds(parameters)))
            made.parents = [node(parent) for _, parent in sorted(parents.get(current, []))]
            return made

        return summarise(digest, node(digest), renders)

    # -- analyst access ----------------------------------------------------------------

    def export(self, target: str | Path, *, progress: Progress | None = None) -> ExportReport:
        """Write every mart and fact table as Parquet to a directory or s3://bucket/prefix.

        ``<target>/<name>.parquet`` per table, then ``<target>/_manifest.json`` with row
        counts. S3 goes through DuckDB's httpfs with the standard AWS settings. The
        warehouse is opened read-only, so exports never block each other.
        """
        from storage.open import open_store

        started = time.perf_counter()
        notify = progress or (lambda phase, done, total: None)
        spec = str(target)
        remote = spec.startswith("s3://")
        destination = open_store(spec)  # validates the URL or names the directory
        names = {**{mart: mart for mart in MARTS}, **FACT_TABLES}
        counts: dict[str, int] = {}
        with self.connect() as con:
            if remote:
                load_httpfs(con)
                configure_s3(con)
            else:
                Path(spec).expanduser().mkdir(parents=True, exist_ok=True)
            for done, (name, table) in enumerate(names.items()):
                notify("export", done, len(names))
                counts[name] = self._export_one(con, table, spec, name, remote)
            notify("export", len(names), len(names))
        manifest = {
            "exported_at": _now() + "Z",
            "warehouse": str(self.path),
            "tables": {name: {"file": f"{name}.parquet", "rows": n} for name, n in counts.items()},
        }
        destination.put(
            "_manifest.json", json.dumps(manifest, indent=2).encode(), "application/json"
        )
        return ExportReport(target=spec, tables=counts, seconds=time.perf_counter() - started)

    @staticmethod
    def _export_one(
        con: duckdb.DuckDBPyConnection, table: str, spec: str, name: str, remote: bool
    ) -> int:
        rows = con.execute(f"select count(*) from {table}").fetchone()[0]
        if remote:
            final = f"{spec.rstrip('/')}/{name}.parquet"
            con.execute(
                f"copy (select * from {table}) to {_sql_string(final)} "
                "(format parquet, compression zstd)"
            )
            return rows
        directory = Path(spec).expanduser()
        # Written beside the target and renamed, so a reader never sees half a file.
        partial = directory / f".{name}.parquet.partial"
        con.execute(
            f"copy (select * from {table}) to {_sql_string(str(partial))} "
            "(format parquet, compression zstd)"
        )
        os.replace(partial, directory / f"{name}.parquet")
        return rows

    def snapshot(self, destination: Path | str) -> Path:
        """A consistent copy of the warehouse file that analysts may open in DuckDB.

        Holds the writer lock only for the checkpoint and the copy.
        """
        destination = Path(destination).expanduser()
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.partial")
        with self._writer() as con:
            con.execute("checkpoint")
            shutil.copyfile(self.path, partial)
        os.replace(partial, destination)
        return destination


@contextlib.contextmanager
def _maybe(
    warehouse: Warehouse, con: duckdb.DuckDBPyConnection | None
) -> Iterator[duckdb.DuckDBPyConnection]:
    if con is not None:
        yield con
        return
    with warehouse.connect() as opened:
        yield opened


def _row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    tables = ("raw_events", "raw_availability", "raw_lineage", "raw_lineage_parents")
    return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}


def _render_seconds(parameters: dict[str, Any]) -> float:
    frames = parameters.get("frames")
    fps = parameters.get("fps")
    if isinstance(frames, int) and isinstance(fps, int) and fps > 0:
        return frames / fps
    return 0.0


def _fetch(store: ObjectStore, key: str) -> bytes | None:
    try:
        return store.get(key)
    except ObjectNotFound:
        return None


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
        con.execute(f"install {_sql_string(str(path))}")
        con.execute("load httpfs")
    except duckdb.Error:
        # The extension directory (~/.duckdb) may not be writable: load the file itself.
        con.execute(f"load {_sql_string(str(path))}")


def configure_s3(con: duckdb.DuckDBPyConnection, endpoint_url: str | None = None) -> None:
    """An S3 secret for httpfs from the standard AWS settings boto3 uses.

    Credentials come from the boto3 credentials chain (environment, profile, instance
    role); the endpoint from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (path-style URLs,
    TLS when the endpoint is https).
    """
    import boto3

    session = boto3.session.Session()
    credentials = session.get_credentials()
    options = ["type s3", f"region {_sql_string(session.region_name or 'us-east-1')}"]
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options.append(f"key_id {_sql_string(frozen.access_key)}")
        options.append(f"secret {_sql_string(frozen.secret_key)}")
        if frozen.token:
            options.append(f"session_token {_sql_string(frozen.token)}")
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
            f"endpoint {_sql_string(parts.netloc)}",
            "url_style 'path'",
            f"use_ssl {'true' if parts.scheme == 'https' else 'false'}",
        ]
    con.execute(f"create or replace temporary secret factory_s3 ({', '.join(options)})")


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
    for name in (*MARTS, *FACT_TABLES):
        con.execute(
            f"create view {name} as select * from read_parquet("
            f"{_sql_string(f'{spec}/{name}.parquet')})"
        )
    return con


# -- the floor in numbers ------------------------------------------------------------------


class FloorSummary(BaseModel):
    """The headline numbers and the tables the report and the markdown artifact show."""

    warehouse: str
    currency: str
    delivered_orders: int
    delivered_minutes: float
    cost: float
    waste_cost: float
    cost_per_delivered_minute: float | None
    attempted_passes: int
    accepted_passes: int
    yield_: float | None = Field(alias="yield")
    first_pass_yield: float | None
    utilization: float | None
    busy_seconds: float
    available_seconds: float
    cache_hits: int
    avoided_cost: float
    net_saved: float
    royalties_owed: float
    unattributed_minutes: float
    rejected_objects: int
    daily: list[dict[str, Any]]
    yield_by_model: list[dict[str, Any]]
    utilization_by_worker: list[dict[str, Any]]
    utilization_by_hour: list[dict[str, Any]]
    cache_by_stage: list[dict[str, Any]]
    royalties_by_holder: list[dict[str, Any]]
    latency: list[dict[str, Any]]

    model_config = {"populate_by_name": True}


def _dicts(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description]
    return [
        {
            k: (v.isoformat() if isinstance(v, date | datetime) else v)
            for k, v in zip(columns, r, strict=True)
        }
        for r in cursor.fetchall()
    ]


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    return _dicts(con, sql)[0]


def summary(warehouse: "Warehouse | Path | str") -> FloorSummary:
    """The floor's numbers over everything ingested so far."""
    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    with wh.connect() as con:
        cost = _one(
            con,
            """
            with per_order as (
                select order_id, sum(cost) as cost, sum(waste_cost) as waste_cost,
                    any_value(delivered_minutes) as minutes, bool_or(delivered) as delivered
                from cost_per_delivered_minute group by order_id
            )
            select count(*) filter (where delivered) as delivered_orders,
                coalesce(sum(minutes), 0) as delivered_minutes,
                coalesce(sum(cost), 0) as cost, coalesce(sum(waste_cost), 0) as waste_cost,
                sum(cost) / nullif(sum(minutes), 0) as cost_per_delivered_minute
            from per_order
            """,
        )
        passes = _one(
            con,
            """
            select coalesce(sum(attempted_passes), 0) as attempted_passes,
                coalesce(sum(accepted_passes), 0) as accepted_passes,
                sum(accepted_passes) / nullif(sum(attempted_passes), 0) as yield,
                sum(first_pass_accepted) / nullif(sum(segments), 0) as first_pass_yield
            from yield
            """,
        )
        use = _one(
            con,
            """
            select coalesce(sum(busy_seconds) filter (where available_seconds > 0), 0)
                    as busy_seconds,
                coalesce(sum(available_seconds), 0) as available_seconds,
                sum(busy_seconds) filter (where available_seconds > 0)
                    / nullif(sum(available_seconds), 0) as utilization
            from utilization
            """,
        )
        cache = _one(
            con,
            """
            select coalesce(sum(hits), 0) as cache_hits,
                coalesce(sum(avoided_cost), 0) as avoided_cost,
                coalesce(sum(net_saved), 0) as net_saved
            from cache_savings
            """,
        )
        owed = _one(
            con,
            """
            select coalesce(sum(royalty), 0) as royalties_owed,
                coalesce(sum(delivered_minutes) filter (where holder is null), 0)
                    as unattributed_minutes
            from royalties
            """,
        )
        currency = con.execute("select currency from royalty_rate").fetchone()[0]
        rejected = con.execute("select count(*) from rejected_objects").fetchone()[0]
        return FloorSummary(
            warehouse=str(wh.path),
            currency=currency,
            **cost,
            attempted_passes=passes["attempted_passes"],
            accepted_passes=passes["accepted_passes"],
            **{"yield": passes["yield"]},
            first_pass_yield=passes["first_pass_yield"],
            **use,
            **cache,
            **owed,
            rejected_objects=rejected,
            daily=_dicts(
                con,
                """
                with per_order as (
                    select day, order_id, sum(cost) as cost,
                        any_value(delivered_minutes) as minutes
                    from cost_per_delivered_minute group by day, order_id
                )
                select day, sum(cost) as cost, sum(minutes) as delivered_minutes,
                    sum(cost) / nullif(sum(minutes), 0) as cost_per_delivered_minute
                from per_order group by day order by day
                """,
            ),
            yield_by_model=_dicts(
                con,
                """
                select model, sum(attempted_passes) as attempted_passes,
                    sum(accepted_passes) as accepted_passes,
                    sum(accepted_passes) / sum(attempted_passes) as yield,
                    sum(first_pass_accepted) / nullif(sum(segments), 0) as first_pass_yield
                from yield group by model order by model
                """,
            ),
            utilization_by_worker=_dicts(
                con,
                """
                select worker_id, any_value(device_class) as device_class,
                    sum(busy_seconds) as busy_seconds,
                    sum(available_seconds) as available_seconds,
                    sum(busy_seconds) filter (where available_seconds > 0)
                        / nullif(sum(available_seconds), 0) as utilization
                from utilization group by worker_id order by worker_id
                """,
            ),
            utilization_by_hour=_dicts(
                con,
                """
                select hour, sum(busy_seconds) filter (where available_seconds > 0)
                        / nullif(sum(available_seconds), 0) as utilization
                from utilization group by hour order by hour
                """,
            ),
            cache_by_stage=_dicts(
                con,
                """
                select stage, sum(hits) as hits, sum(computed) as computed,
                    sum(avoided_device_seconds) as avoided_device_seconds,
                    sum(avoided_cost) as avoided_cost, sum(net_saved) as net_saved
                from cache_savings group by stage
                order by list_position(
                    ['ingest', 'render', 'composite', 'encode', 'gate', 'assemble'], stage)
                """,
            ),
            royalties_by_holder=_dicts(
                con,
                """
                select coalesce(holder, '(no verified lineage)') as holder,
                    sum(delivered_minutes) as delivered_minutes, sum(royalty) as royalty
                from royalties group by royalties.holder order by royalties.holder nulls last
                """,
            ),
            latency=_dicts(
                con,
                """
                select stage, attempts, p50_ms, p95_ms, budget_p95_ms, within_budget
                from stage_latency order by stage_order, stage
                """,
            ),
        )


def _money(value: float | None, currency: str) -> str:
    return "–" if value is None else f"{value:,.4f} {currency}"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def summary_markdown(warehouse: "Warehouse | Path | str") -> str:
    """The floor's numbers as Markdown, e.g. for a Prefect markdown artifact."""
    s = summary(warehouse)
    c = s.currency
    lines = [
        "# Factory floor",
        "",
        "| measure | value |",
        "|---|---|",
        f"| delivered | {s.delivered_minutes:,.2f} min in {s.delivered_orders} orders |",
        f"| cost per delivered minute | {_money(s.cost_per_delivered_minute, c)} |",
        f"| device cost (waste) | {_money(s.cost, c)} ({_money(s.waste_cost, c)}) |",
        f"| yield (first pass) | {_share(s.yield_)} ({_share(s.first_pass_yield)}) |",
        f"| utilization | {_share(s.utilization)} |",
        f"| cache savings | {_money(s.net_saved, c)} net over {s.cache_hits} hits |",
        f"| royalties owed | {_money(s.royalties_owed, c)} |",
    ]
    if s.unattributed_minutes:
        lines.append(f"| minutes without verified lineage | {s.unattributed_minutes:,.2f} min |")
    if s.rejected_objects:
        lines.append(f"| objects rejected at ingest | {s.rejected_objects} |")
    lines += [
        "",
        "## Stage latency",
        "",
        "| stage | p50 | p95 | budget | |",
        "|---|---|---|---|---|",
    ]
    for row in s.latency:
        mark = {True: "✅", False: "❌"}.get(row["within_budget"], "")
        lines.append(
            f"| {row['stage']} | {_ms(row['p50_ms'])} | {_ms(row['p95_ms'])} | "
            f"{_ms(row['budget_p95_ms'])} | {mark} |"
        )
    if s.royalties_by_holder:
        lines += ["", "## Royalties", "", "| rights holder | minutes | owed |", "|---|---|---|"]
        for row in s.royalties_by_holder:
            lines.append(
                f"| {row['holder']} | {row['delivered_minutes']:,.3f} | "
                f"{_money(row['royalty'], c)} |"
            )
    return "\n".join(lines) + "\n"
