"""Ingest: what the factory wrote to the object store, loaded into the warehouse's tables.

* ``floor/events/…jsonl`` → ``raw_events`` (one row per event, key ``event_id``)
* ``floor/availability/…jsonl`` → ``raw_availability``
* ``lineage/records/…dsse.json`` → ``raw_lineage`` (key: asset digest) and
  ``raw_lineage_parents``, each record checked by the project's lineage reader
  (``storage.lineage_reader``: the signature against the keys published in the store,
  the record against the asset it is filed under), as ``factory verify`` checks it.
  A record that does not verify is never loaded: it is listed in the report and in
  ``rejected_objects``, and tried again by the next ingest.

Every loaded object's URI goes into ``ingested_objects``, so the next ingest fetches
only new objects; a row goes in only if its key (``schema.sql``) is not there yet,
so loading anything twice changes nothing, even from two processes at once. Objects
are fetched and verified outside any transaction; each batch of rows is then one
transaction, done again from the start if another writer commits first.
"""

import functools
import json
import logging
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
from pydantic import BaseModel, Field

from factory.errors import IntegrityError, ObjectNotFound
from factory.floor import LatencyBudget, PriceCard
from factory.lineage import LineageRecord, record_digest
from storage.floor_events import (
    list_availability_keys,
    list_event_keys,
    parse_availability,
    parse_events,
)
from storage.lineage import RECORDS_PREFIX
from storage.lineage_reader import LineageReader
from storage.objectstore import ObjectStore
from storage.trust import TrustAnchor
from storage.warehouse import models
from storage.warehouse.lineage_index import COLUMNS as INDEX_COLUMNS
from storage.warehouse.lineage_index import PARENT_COLUMNS, LineageIndex
from storage.warehouse.schema import LOADED_TABLES, columns, keys, read_sql, sql_string

if TYPE_CHECKING:
    from storage.warehouse.core import Warehouse

log = logging.getLogger("factory.floor")
Progress = Callable[[str, int, int], None]
T = TypeVar("T")

_LINEAGE_SUFFIX = ".dsse.json"


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


def ingest(
    warehouse: "Warehouse",
    store: ObjectStore,
    anchor: TrustAnchor,
    *,
    progress: Progress | None = None,
    batch_objects: int = 2000,
    fetch_workers: int = 16,
) -> IngestReport:
    """Load new events, availability and verified lineage records from the store."""
    started = time.perf_counter()
    notify = progress or (lambda phase, done, total: None)
    notify("list", 0, 0)
    listed = _list(store)
    index = warehouse.lineage_index
    with warehouse.writer() as con:
        # One transaction: on a lake each one loads the catalog's snapshot once.
        known, rejected_before, table_columns = warehouse.transact(
            con, functools.partial(_prepare, config=warehouse.config(), index=index), "ingest"
        )
    todo = [
        (kind, key, uri)
        for kind, keys in listed.items()
        for key in keys
        # Once per key: a store's every object, and 0.1 ms a call on a local store.
        if (uri := store.uri(key)) not in known
    ]
    loaded = dict.fromkeys(listed, 0)
    rows = dict.fromkeys(LOADED_TABLES, 0)
    added = dict.fromkeys(LOADED_TABLES, 0)
    rejected: list[Rejected] = []
    reader = (
        LineageReader.of(store, anchor) if any(kind == "lineage" for kind, _, _ in todo) else None
    )
    notify("ingest", 0, len(todo))
    done = 0
    with (
        ThreadPoolExecutor(max_workers=max(1, fetch_workers)) as pool,
        tempfile.TemporaryDirectory(prefix="floor-ingest-") as scratch,
    ):
        for chunk in _chunks(todo, batch_objects):
            batch = _Batch(rejected_before)
            fetched = pool.map(lambda item: _fetch(store, item[1]), chunk)
            for (kind, key, uri), data in zip(chunk, fetched, strict=True):
                if data is None:
                    continue  # removed since it was listed
                try:
                    count = _parse(kind, key, uri, data, reader, batch, rows)
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
            files = batch.write(Path(scratch))
            with warehouse.writer() as con:
                load = functools.partial(
                    _Batch.load, files=files, table_columns=table_columns, batch=batch
                )
                inserted = warehouse.transact(con, load, "ingest")
            if index is not None:
                # After the lake's commit: the index never holds what the lake does not.
                _index(index, batch)
            for table in LOADED_TABLES:
                added[table] += inserted.get(table, 0)
            done += len(chunk)
            notify("ingest", done, len(todo))
    return IngestReport(
        store=store.url,
        warehouse=warehouse.name,
        listed={kind: len(keys) for kind, keys in listed.items()},
        loaded=loaded,
        rows=rows,
        added=added,
        rejected=rejected,
        seconds=time.perf_counter() - started,
    )


def _prepare(
    con: duckdb.DuckDBPyConnection,
    config: tuple[PriceCard, LatencyBudget],
    index: LineageIndex | None,
) -> tuple[set[str], set[str], dict[str, dict[str, str]]]:
    """Views and config up to date, no object both loaded and rejected, the lineage
    index level with the lake; the objects loaded so far, those rejected, and each
    table's columns."""
    models.refresh(con, *config)
    # One query for both lists: on a lake each query costs a read of the catalog.
    objects = con.execute(
        "select uri, kind from ingested_objects union all select uri, null from rejected_objects"
    ).fetchall()
    known = {uri for uri, kind in objects if kind is not None}
    rejected = {uri for uri, kind in objects if kind is None}
    stale = sorted(rejected & known)
    if stale:  # loaded since, by another ingest (each forgets what it loads itself)
        con.execute(f"delete from rejected_objects where uri in ({_literals(stale)})")
        rejected -= known
    if index is not None:
        # A record per lineage object loaded: when the index holds as many, it is level.
        index.catch_up(con, sum(kind == "lineage" for _, kind in objects))
    return known, rejected, columns(con, _Batch.TABLES)


def _literals(values: Sequence[str]) -> str:
    return ", ".join(map(sql_string, values))


def _index(index: LineageIndex, batch: "_Batch") -> None:
    """The batch's verified records into the lineage index; a failure is logged, and the
    next ingest's catch-up copies them (the lake has them already)."""
    records = [tuple(row[c] for c in INDEX_COLUMNS) for row in batch.rows["raw_lineage"]]
    edges = [tuple(row[c] for c in PARENT_COLUMNS) for row in batch.rows["raw_lineage_parents"]]
    try:
        index.add(records, edges)
    except sqlite3.Error as error:
        log.warning("lineage index %s not updated (the next ingest retries): %s", index.path, error)


class _Batch:
    """Rows for each table, gathered from one batch of objects, then loaded in one go."""

    TABLES = (*LOADED_TABLES, "ingested_objects", "rejected_objects")

    def __init__(self, rejected_before: set[str]) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in self.TABLES}
        self.rejected_before = rejected_before

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.rows[table].append(row)

    def write(self, directory: Path) -> dict[str, Path]:
        """Each table's rows as one JSON-lines file: table → file."""
        files = {}
        for table, rows in self.rows.items():
            if not rows:
                continue
            path = directory / f"{table}.jsonl"
            with open(path, "w", encoding="utf-8") as file:
                for row in rows:
                    file.write(json.dumps(row, separators=(",", ":")))
                    file.write("\n")
            files[table] = path
        return files

    def touched_orders(self, con: duckdb.DuckDBPyConnection) -> set[str]:
        """The orders whose materialised rows the batch's rows may change (after they
        are inserted): those of its events, and those that delivered an asset made from
        one of its lineage records (a record may arrive after the delivery's events)."""
        orders = {row["order_id"] for row in self.rows["raw_events"]}
        digests = [row["asset_digest"] for row in self.rows["raw_lineage"]]
        if digests:
            orders.update(
                order
                for (order,) in con.execute(
                    read_sql("delivered_from"), [digests, sorted(orders)]
                ).fetchall()
            )
        return orders

    @staticmethod
    def load(
        con: duckdb.DuckDBPyConnection,
        files: dict[str, Path],
        table_columns: dict[str, dict[str, str]],
        batch: "_Batch",
    ) -> dict[str, int]:
        """Insert the rows whose key is new, typed by the schema, and bring the
        materialised models up to date for the orders that changed; rows inserted per
        table.

        Runs inside one transaction (redone from the start if it loses a commit race),
        so the rows, the objects they came from, the models and the turn row land
        together.
        """
        con.execute("insert into ingest_turn select 0 where not exists (from ingest_turn)")
        con.execute("update ingest_turn set batches = batches + 1")
        inserted = {}
        for table, path in files.items():
            spec = ", ".join(f"{name}: '{kind}'" for name, kind in table_columns[table].items())
            source = (
                f"read_json({sql_string(str(path))}, format = 'newline_delimited', "
                f"columns = {{{spec}}})"
            )
            key = keys()[table]
            if table == "rejected_objects":  # a new reason replaces the old one
                con.execute(f"delete from {table} where uri in (select uri from {source})")
            same = " and ".join(f"old.{column} = new.{column}" for column in key)
            inserted[table] = con.execute(
                f"insert into {table} by name select * from {source} as new "
                f"where not exists (select 1 from {table} as old where {same}) "
                f"qualify row_number() over (partition by {', '.join(key)}) = 1"
            ).fetchone()[0]
        # What verifies now (a key published late) is no longer rejected.
        loaded = {row["uri"] for row in batch.rows["ingested_objects"]}
        forget = sorted(loaded & batch.rejected_before)
        if forget:
            con.execute(f"delete from rejected_objects where uri in ({_literals(forget)})")
        if inserted.get("raw_events") or inserted.get("raw_lineage"):
            models.refresh_orders(con, batch.touched_orders(con))
        return inserted


def _list(store: ObjectStore) -> dict[str, list[str]]:
    return {
        "events": list_event_keys(store),
        "availability": list_availability_keys(store),
        "lineage": [k for k in store.list(RECORDS_PREFIX) if k.endswith(_LINEAGE_SUFFIX)],
    }


def _parse(
    kind: str,
    key: str,
    uri: str,
    data: bytes,
    reader: LineageReader | None,
    batch: _Batch,
    rows: dict[str, int],
) -> int:
    """Add one object's rows to the batch; IntegrityError when it cannot be loaded."""
    if kind == "events":
        table_rows = [("raw_events", _event_row(event, uri)) for event in parse_events(data, uri)]
    elif kind == "availability":
        table_rows = [
            ("raw_availability", _availability_row(interval, uri))
            for interval in parse_availability(data, uri)
        ]
    else:
        assert reader is not None  # made whenever there is lineage to load
        digest = key.rsplit("/", 1)[-1].removesuffix(_LINEAGE_SUFFIX)
        table_rows = _lineage_rows(reader.check(data, digest), data, uri)
    for table, row in table_rows:
        batch.add(table, row)
        rows[table] += 1
    return len(table_rows)


def _event_row(event: Any, uri: str) -> dict[str, Any]:
    row = event.model_dump(mode="json")
    row["started"] = _naive_utc(event.started)
    row["ended"] = _naive_utc(event.ended)
    row["source_uri"] = uri
    return row


def _availability_row(interval: Any, uri: str) -> dict[str, Any]:
    return {
        "worker_id": interval.worker_id,
        "device_class": interval.device_class,
        "up_from": _naive_utc(interval.up_from),
        "up_to": _naive_utc(interval.up_to),
        "source_uri": uri,
    }


def _lineage_rows(record: LineageRecord, envelope: bytes, uri: str) -> list[tuple[str, dict]]:
    model = record.model
    lineage = {
        "asset_digest": record.asset.digest,
        "record_digest": record_digest(envelope),
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
            [p.model_dump(mode="json") for p in model.training_provenance] if model else None
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
    }
    parents = [
        {
            "asset_digest": record.asset.digest,
            "position": position,
            "parent_digest": parent.digest,
            "parent_record_digest": parent.record_digest,
        }
        for position, parent in enumerate(record.parents)
    ]
    return [("raw_lineage", lineage), *(("raw_lineage_parents", row) for row in parents)]


def _naive_utc(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat()


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _fetch(store: ObjectStore, key: str) -> bytes | None:
    try:
        return store.get(key)
    except ObjectNotFound:
        return None
