"""Factory floor warehouse (DuckLake): ingest throughput, marts over 1M events, ancestry
over 1M records.

    .venv/bin/python -m bench.floor [--events 1000000] [--lineage-orders 77000]
                                    [--ingest-records 5000] [--ingest-events 50000] [--no-s3]
                                    [--no-ingest] [--no-export] [--baseline-ref REF]

Ingest: signed lineage records and JSON-lines event batches written to a local store
(and to a throwaway SeaweedFS, unless --no-s3), then ``Warehouse.ingest`` timed into
a lake with a SQLite catalog and its Parquet beside the store (local: a directory; S3:
the same bucket, through httpfs): records/s includes fetching and Ed25519
verification. Marts: 1M synthetic events and ~1M lineage records generated inside the
lake with range(), the materialised models computed whole and the lineage index
copied from the lake (what ingest does batch by batch), then every mart computed by a
reader that attached the lake read-only, as an analyst does (goal ≤ 1 s each); with
--baseline-ref, the models' SQL at that git ref is timed over the same lake in the same
run (a second reader, where the ref's SQL shadows the lake's models as temp views),
mart by mart in turn. Ancestry: ``Warehouse.ancestry_edges`` (WITH RECURSIVE), the
full ``Warehouse.ancestry`` tree and the point lookup, for random deliverables over
~1M records (goal ≤ 10 ms), on the lineage index, on the lake and (unless --no-export)
on its ``--duckdb`` export (lineage indexed; the export's marts are timed too).
"""

import argparse
import hashlib
import random
import sqlite3
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from bench.common import emit
from factory.floor import FloorEvent, LatencyBudget, PriceCard, WorkerAvailability
from factory.lineage import (
    AssetInfo,
    CodeInfo,
    LineageRecord,
    ModelInfo,
    ParentLink,
    StageInfo,
    sign_record,
)
from storage import keys
from storage.floor_events import EventWriter
from storage.lineage import RecordStore
from storage.local import LocalStore
from storage.objectstore import ObjectStore
from storage.trust import local_anchor
from storage.warehouse import MARTS, Warehouse
from storage.warehouse.extensions import extension_path
from storage.warehouse.lineage_index import LineageIndex
from storage.warehouse.models import MODELS

PRICES = PriceCard(
    currency="USD",
    royalty_per_delivered_minute=0.5,
    device_hour={"default": 2.0, "cpu": 0.1, "NVIDIA H100 80GB HBM3": 3.5},
)
BUDGET = LatencyBudget(
    end_to_end_ms=60_000,
    stages={
        "render": 30_000,
        "composite": 5_000,
        "encode": 5_000,
        "gate": 1_000,
        "assemble": 5_000,
    },
)
MODEL = ModelInfo(
    name="wan-a",
    weights_fingerprint=hashlib.sha256(b"w").hexdigest(),
    training_provenance=[{"source": "stock footage"}],
    royalty_routing=[{"holder": "studio", "share": 0.7}, {"holder": "lab", "share": 0.3}],
)
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_records(store: ObjectStore, keys_dir: Path, records: int) -> None:
    """Signed records: every render followed by an encode whose parent it is."""
    keys.init(keys_dir)
    keys.publish_public_keys(keys_dir, store)
    signer = keys.load_signer(keys_dir)
    writer = RecordStore(store)
    previous: tuple[str, str] | None = None
    for n in range(records):
        digest = _digest(f"asset {n}")
        parents = [] if n % 2 == 0 or previous is None else [previous]
        record = LineageRecord(
            asset=AssetInfo(digest=digest, media_type="video/mp4", size=1, uri=f"x/{digest}"),
            parents=[ParentLink(digest=d, record_digest=r) for d, r in parents],
            stage=StageInfo(name="render" if not parents else "encode", version="1"),
            order_id=f"o{n // 2}",
            flow_run_id="bench",
            task_run_id=f"t{n}",
            model=MODEL if not parents else None,
            parameters={"frames": 48, "fps": 16},
            device_class="cpu",
            device_seconds=1.0,
            started=T0,
            ended=T0 + timedelta(seconds=1),
            code=CodeInfo(package_version="0.1.0"),
            key_id=signer.key_id,
        )
        previous = (digest, writer.write(sign_record(record, signer), digest, "bench"))


def write_events(store: ObjectStore, events: int, per_batch: int = 500) -> None:
    """Event batches of per_batch events (one flow run each), one availability per worker."""
    writer = EventWriter(store)
    batch: list[FloorEvent] = []
    for n in range(events):
        start = T0 + timedelta(seconds=n)
        batch.append(
            FloorEvent(
                order_id=f"o{n // 17}",
                flow_run_id=f"f{n // per_batch}",
                task_run_id=f"t{n}",
                segment_index=n % 4,
                stage="render",
                model="wan-a",
                device_class="cpu",
                worker_id=f"w{n % 8}",
                started=start,
                ended=start + timedelta(seconds=1),
                device_seconds=0.9,
                status="completed",
                output_digest=_digest(f"out {n}"),
            )
        )
        if len(batch) == per_batch or n == events - 1:
            writer.write_batch(f"f{n // per_batch}", "final", batch)
            batch = []
    for worker in range(8):
        writer.write_availability(
            f"w{worker}",
            [
                WorkerAvailability(
                    worker_id=f"w{worker}",
                    device_class="cpu",
                    up_from=T0,
                    up_to=T0 + timedelta(days=1),
                )
            ],
        )


def ingest_throughput(
    store: ObjectStore, tmp: Path, records: int, events: int, data: str | None = None
) -> dict:
    """Lineage first (fetch + verify per record), then event batches, then a no-op rerun."""
    warehouse = Warehouse(tmp / "ingest.sqlite", data, price_card=PRICES, latency_budget=BUDGET)
    # A process's first touch of a lake: load the extensions, create the catalog, the
    # tables and the views (apart from the throughput below).
    start = time.perf_counter()
    warehouse.refresh_models()
    lake_open_s = time.perf_counter() - start
    start = time.perf_counter()
    write_records(store, tmp / "keys", records)
    write_records_s = time.perf_counter() - start
    anchor = local_anchor(tmp / "keys")
    lineage = warehouse.ingest(store, anchor)
    start = time.perf_counter()
    write_events(store, events)
    write_events_s = time.perf_counter() - start
    floor = warehouse.ingest(store, anchor)
    again = warehouse.ingest(store, anchor)
    assert not lineage.rejected and not floor.rejected
    assert warehouse.counts()["raw_events"] == events
    return {
        "first_open_s": round(lake_open_s, 3),
        "lineage_records": records,
        "write_records_s": round(write_records_s, 2),
        "ingest_lineage_s": round(lineage.seconds, 3),
        "lineage_records_per_s": round(records / lineage.seconds, 1),
        "events": events,
        "event_objects": floor.loaded["events"],
        "write_events_s": round(write_events_s, 2),
        "ingest_events_s": round(floor.seconds, 3),
        "events_per_s": round(events / floor.seconds, 1),
        "reingest_noop_s": round(again.seconds, 3),
    }


SYNTHETIC = """
-- Lineage: per order 4 renders, 4 composites (parent: render), 4 encodes (parent:
-- composite), 1 deliverable (parents: the 4 encodes) = 13 records, 12 edges.
insert into raw_lineage
select
    sha256(kind || ':' || o || ':' || s), sha256('record:' || kind || ':' || o || ':' || s),
    kind, '1', 'o' || o, 'f' || o, 't' || o || s, 'video/mp4', 1000, 'x',
    case when kind = 'render' then 'wan-' || (o % 3) end,
    case when kind = 'render' then sha256('weights') end,
    case when kind = 'render' then '[{"source": "stock footage"}]'::json end,
    case when kind = 'render'
        then '[{"holder": "studio", "share": 0.7}, {"holder": "lab", "share": 0.3}]'::json end,
    case when kind = 'render' then '{"frames": 48, "fps": 16}'::json else '{}'::json end,
    'cpu', 2.0, timestamp '2026-01-05' + to_seconds(o * 30),
    timestamp '2026-01-05' + to_seconds(o * 30 + 2), 'key', null, '0.1.0', null, 'synthetic'
from range({orders}) t(o), range(4) u(s), (values ('render'), ('composite'), ('encode')) k(kind)
union all
select
    sha256('assemble:' || o || ':0'), sha256('record:assemble:' || o), 'assemble', '1',
    'o' || o, 'f' || o, 't' || o, 'video/mp4', 1000, 'x', null, null, null, null, '{}'::json,
    'cpu', 1.0, timestamp '2026-01-05' + to_seconds(o * 30),
    timestamp '2026-01-05' + to_seconds(o * 30 + 1), 'key', null, '0.1.0', null, 'synthetic'
from range({orders}) t(o);

insert into raw_lineage_parents
select sha256('composite:' || o || ':' || s), 0, sha256('render:' || o || ':' || s), 'r'
from range({orders}) t(o), range(4) u(s)
union all
select sha256('encode:' || o || ':' || s), 0, sha256('composite:' || o || ':' || s), 'r'
from range({orders}) t(o), range(4) u(s)
union all
select sha256('assemble:' || o || ':0'), s, sha256('encode:' || o || ':' || s), 'r'
from range({orders}) t(o), range(4) u(s);

-- Events: 20 per order. Slots 0-15: segment slot // 4 through render, composite, encode,
-- gate (every 5th order's segment 0 is rejected at the gate, every 7th order's first
-- render is a retried attempt); slots 16-18: segment 0 again (a re-render after the
-- rejection, else the rerun's cache hits); slot 19: assemble, 12 s delivered.
insert into raw_events
select
    lpad(to_hex(i), 32, '0'),
    'o' || o,
    'f' || o,
    't' || o || ':' || slot,
    seg,
    stage,
    1,
    case when stage = 'render' then 'wan-' || (o % 3) end,
    case when o % 64 % 2 = 0 then 'NVIDIA H100 80GB HBM3' else 'cpu' end,
    'worker-' || (o % 64),
    timestamp '2026-01-05' + to_seconds(o * 30 + slot * 5),
    timestamp '2026-01-05' + to_seconds(o * 30 + slot * 5 + 4),
    case when status = 'cache_hit' then 0.01 else 3.5 end,
    status,
    status = 'cache_hit',
    1000, 2000,
    case
        when stage = 'gate' or status in ('failed', 'retried') then null
        when slot = 19 then sha256('assemble:' || o || ':0')
        else sha256(stage || ':' || o || ':' || seg)
    end,
    case when slot = 19 then 12.0 else 0 end,
    'synthetic'
from (
    select
        i, i // 20 as o, i % 20 as slot,
        case when i % 20 < 16 then i % 20 // 4 when i % 20 < 19 then 0 end as seg,
        case
            when i % 20 = 19 then 'assemble'
            when i % 20 >= 16 then ['render', 'composite', 'encode'][i % 20 - 15]
            else ['render', 'composite', 'encode', 'gate'][i % 20 % 4 + 1]
        end as stage,
        case
            when i % 20 = 0 and i // 20 % 7 = 0 then 'retried'
            when i % 20 = 3 and i // 20 % 5 = 0 then 'rejected'
            when i % 20 between 16 and 18 and i // 20 % 5 <> 0 then 'cache_hit'
            else 'completed'
        end as status
    from range({events}) t(i)
);

insert into raw_availability
select 'worker-' || w, case when w % 2 = 0 then 'NVIDIA H100 80GB HBM3' else 'cpu' end,
    timestamp '2026-01-05' + to_days(d::integer),
    timestamp '2026-01-05' + to_days(d::integer) + interval 20 hour, 'synthetic'
from range(64) t(w), range({days}) u(d);
"""


def build_synthetic(path: Path, events: int, orders: int) -> dict:
    warehouse = Warehouse(path, price_card=PRICES, latency_budget=BUDGET)
    warehouse.refresh_models()
    days = events // 20 * 30 // 86400 + 2
    start = time.perf_counter()
    with warehouse.writer() as con:
        sql = SYNTHETIC.replace("{orders}", str(orders)).replace("{events}", str(events))
        con.execute(sql.replace("{days}", str(days)))
        counts = {
            t: con.execute(f"select count(*) from {t}").fetchone()[0]
            for t in ("raw_events", "raw_lineage", "raw_lineage_parents", "raw_availability")
        }
    # What ingest keeps current batch by batch, made whole for rows loaded by SQL.
    start_models = time.perf_counter()
    warehouse.rebuild_models()
    models_s = time.perf_counter() - start_models
    start_index = time.perf_counter()
    indexed = warehouse.catch_up_lineage_index()
    return {
        "build_s": round(start_models - start, 1),
        "materialise_models_s": round(models_s, 1),
        "lineage_index_s": round(time.perf_counter() - start_index, 1),
        "lineage_index_records": indexed,
        **counts,
    }


def analyst(warehouse: Warehouse) -> duckdb.DuckDBPyConnection:
    """A DuckDB of its own with the lake attached read-only, as storage/sql/README.md says."""
    con = duckdb.connect()
    for name in ("ducklake", "sqlite"):
        con.execute(f"install '{extension_path(name)}'")
        con.execute(f"load {name}")
    con.execute(f"attach 'ducklake:{warehouse.location.catalog}' as floor (read_only)")
    con.execute("use floor")
    return con


def baseline(con: duckdb.DuckDBPyConnection, ref: str) -> duckdb.DuckDBPyConnection:
    """``con`` with every model's SQL at git ``ref`` as a temp view: temp views shadow the
    lake's models, in the lake's views too, so every mart is computed the ref's way."""
    for model in MODELS:
        sql = subprocess.run(
            ["git", "show", f"{ref}:storage/sql/{model}.sql"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        con.execute(f"create temp view {model.split('/')[1]} as\n{sql}")
    return con


def time_marts(readers: dict[str, duckdb.DuckDBPyConnection], rounds: int = 3) -> dict:
    """Per mart and reader: computing every row inside DuckDB (CTAS into a temp table),
    median of ``rounds``; the readers take turns, so load drifts touch them alike."""
    results: dict[str, dict] = {name: {} for name in readers}
    for mart in MARTS:
        times: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(rounds):
            for name, con in readers.items():
                start = time.perf_counter()
                con.execute(f"create or replace temp table m as select * from {mart}")
                times[name].append(time.perf_counter() - start)
        for name, con in readers.items():
            rows = con.execute("select count(*) from m").fetchone()[0]
            results[name][mart] = {"compute_s": round(statistics.median(times[name]), 3)}
            results[name][mart]["rows"] = rows
    if len(readers) == 2:
        before, after = readers
        results["speedup"] = {
            mart: round(results[before][mart]["compute_s"] / results[after][mart]["compute_s"], 1)
            for mart in MARTS
        }
    return results


def time_ancestry(
    source: Warehouse | LineageIndex,
    orders: int,
    con: duckdb.DuckDBPyConnection | sqlite3.Connection,
    samples: int = 50,
) -> dict:
    """Ancestry of random deliverables on ``con``: the lake or a DuckDB export of it
    (``source`` the warehouse), or the lineage index (``source`` the index)."""
    picks = random.Random(7).sample(range(orders), samples)
    digests = [hashlib.sha256(f"assemble:{o}:0".encode()).hexdigest() for o in picks]
    edges_ms, tree_ms, lookup_ms = [], [], []
    source.ancestry(digests[0], con)  # warm
    for digest in digests:
        start = time.perf_counter()
        edges = source.ancestry_edges(digest, con)
        edges_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        tree = source.ancestry(digest, con)
        tree_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        source.lookup(digest, con)
        lookup_ms.append((time.perf_counter() - start) * 1000)
    assert len(edges) == 12 and len(tree.tree.parents) == 4
    return {
        "depth": 3,
        "edges_per_tree": 12,
        "ancestry_edges_with_recursive_ms": round(statistics.median(edges_ms), 2),
        "ancestry_tree_ms": round(statistics.median(tree_ms), 2),
        "ancestry_tree_p95_ms": round(sorted(tree_ms)[int(0.95 * len(tree_ms))], 2),
        "point_lookup_ms": round(statistics.median(lookup_ms), 3),
    }


def size_mb(*paths: Path) -> float:
    files = [p for path in paths for p in ([path] if path.is_file() else path.rglob("*"))]
    return round(sum(f.stat().st_size for f in files if f.is_file()) / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--lineage-orders", type=int, default=77_000)
    parser.add_argument("--ingest-records", type=int, default=5_000)
    parser.add_argument("--ingest-events", type=int, default=50_000)
    parser.add_argument("--s3-records", type=int, default=2_000)
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--no-ingest", action="store_true", help="skip ingest throughput")
    parser.add_argument("--no-export", action="store_true", help="skip the --duckdb export")
    parser.add_argument("--baseline-ref", help="git ref whose model SQL is timed as 'before'")
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as scratch:
        tmp = Path(scratch)
        if not args.no_ingest:
            (tmp / "local").mkdir()
            results["ingest_local"] = ingest_throughput(
                LocalStore(tmp / "local" / "store"),
                tmp / "local",
                args.ingest_records,
                args.ingest_events,
            )
            if not args.no_s3:
                results["ingest_s3"] = ingest_s3(tmp, args.s3_records, args.ingest_events // 5)
        path = tmp / "synthetic.sqlite"
        orders = max(args.lineage_orders, args.events // 20)
        results["synthetic"] = build_synthetic(path, args.events, orders)
        warehouse = Warehouse(path)
        readers = {"lake": analyst(warehouse)}
        if args.baseline_ref:
            readers = {
                f"lake, models at {args.baseline_ref}": baseline(
                    analyst(warehouse), args.baseline_ref
                ),
                **readers,
            }
        results["marts_1m_events"] = time_marts(readers)
        for con in readers.values():
            con.close()
        assert warehouse.lineage_index is not None
        with warehouse.lineage_index.reader() as con:
            results["lineage_on_the_index"] = time_ancestry(warehouse.lineage_index, orders, con)
        results["index_mb"] = size_mb(warehouse.lineage_index.path)
        with warehouse.connect() as con:
            results["lineage_on_the_lake"] = time_ancestry(warehouse, orders, con)
        if not args.no_export:
            # The single-file export: tables in DuckDB's own format, lineage indexed.
            exported = warehouse.export_duckdb(tmp / "export.duckdb")
            results["duckdb_export_s"] = round(exported.seconds, 2)
            with duckdb.connect(str(tmp / "export.duckdb"), read_only=True) as con:
                results["marts_1m_events_on_the_duckdb_export"] = time_marts({"export": con})
                results["lineage_on_the_duckdb_export"] = time_ancestry(warehouse, orders, con)
            results["export_mb"] = size_mb(tmp / "export.duckdb")
        results["lake_mb"] = size_mb(
            path, warehouse.location.sqlite_path.with_name("synthetic.files")
        )
    emit("floor", results)


def ingest_s3(tmp: Path, records: int, events: int) -> dict:
    import os

    from storage.s3 import S3Store
    from tests.s3server import running_seaweedfs

    with running_seaweedfs(tmp / "seaweedfs") as server:
        saved = {k: os.environ.get(k) for k in server.env()}
        os.environ.update(server.env())
        try:
            bucket = server.make_bucket()
            store = S3Store(bucket, "factory")
            (tmp / "s3").mkdir()
            return {"server": "SeaweedFS (weed mini) on loopback"} | ingest_throughput(
                store, tmp / "s3", records, events, f"s3://{bucket}/factory/warehouse/"
            )
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


if __name__ == "__main__":
    main()
