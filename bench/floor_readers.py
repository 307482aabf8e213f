"""Readers while the factory ingests: an analyst's query latency, and the ingest's time.

    .venv/bin/python -m bench.floor_readers [--batches 200] [--per-batch 250] [--records 1000]
                                            [--pause 0.05]

A local store gets ``--records`` signed lineage records and ``--batches`` event objects
of ``--per-batch`` events. Two fresh lakes ingest it: one alone, one while another
process, an analyst's own DuckDB with the lake attached read-only (as
storage/sql/README.md says), runs a loop of queries (events counted through
``stg_events``, the ``yield`` and ``stage_latency`` marts) with ``--pause`` seconds
between rounds. Reported:
both ingest times, and the reader's latency per query round before and during the
ingest, with any error it saw (the goal: none, and the ingest no slower than alone,
within noise).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import emit
from bench.floor import BUDGET, PRICES, write_events, write_records
from storage.local import LocalStore
from storage.trust import local_anchor
from storage.warehouse import Warehouse
from storage.warehouse.extensions import extension_path

READER = """
import json, sys, time
from pathlib import Path
import duckdb
con = duckdb.connect()
for path in sys.argv[4:]:
    con.execute(f"install '{path}'")
con.execute("load ducklake")
con.execute("load sqlite")
con.execute(f"attach 'ducklake:sqlite:{sys.argv[1]}' as floor (read_only)")
con.execute("use floor")
stop = Path(sys.argv[2])
while not stop.exists():
    start = time.time()
    error = None
    try:
        rows = con.execute("select count(*) from stg_events").fetchone()[0]
        con.execute("select * from yield").fetchall()
        con.execute("select * from stage_latency").fetchall()
    except duckdb.Error as failed:
        error, rows = str(failed), None
    print(json.dumps([start, time.time() - start, rows, error]), flush=True)
    time.sleep(float(sys.argv[3]))
"""


def ingest_alone(store: LocalStore, keys: Path, tmp: Path) -> float:
    warehouse = Warehouse(tmp / "alone.sqlite", price_card=PRICES, latency_budget=BUDGET)
    warehouse.refresh_models()
    return warehouse.ingest(store, local_anchor(keys), batch_objects=20).seconds


def ingest_watched(store: LocalStore, keys: Path, tmp: Path, pause: float) -> dict:
    warehouse = Warehouse(tmp / "watched.sqlite", price_card=PRICES, latency_budget=BUDGET)
    warehouse.refresh_models()
    stop = tmp / "stop"
    extensions = [str(extension_path(name)) for name in ("ducklake", "sqlite")]
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            READER,
            str(warehouse.location.sqlite_path),
            str(stop),
            str(pause),
            *extensions,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(5)  # the reader's idle rounds
    began = time.time()
    report = warehouse.ingest(store, local_anchor(keys), batch_objects=20)
    ended = time.time()
    time.sleep(1)
    stop.touch()
    out, _ = reader.communicate(timeout=120)
    rounds = [json.loads(line) for line in out.splitlines()]
    idle = [r[1] for r in rounds if r[0] + r[1] < began and r[0] > began - 4]
    during = [r[1] for r in rounds if began <= r[0] < ended]
    return {
        "ingest_s": round(report.seconds, 2),
        "events": report.added["raw_events"],
        "reader_rounds_during_ingest": len(during),
        "reader_errors": [r[3] for r in rounds if r[3]],
        "reader_saw_rows": sorted({r[2] for r in rounds if r[2] is not None}),
        "reader_round_ms_idle": summary_ms(idle),
        "reader_round_ms_during_ingest": summary_ms(during),
    }


def summary_ms(latencies: list[float]) -> dict:
    if not latencies:
        return {}
    ordered = sorted(latencies)
    return {
        "p50": round(statistics.median(ordered) * 1000, 1),
        "p95": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--per-batch", type=int, default=250)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-floor-readers-") as scratch:
        tmp = Path(scratch)
        store = LocalStore(tmp / "store")
        write_records(store, tmp / "keys", args.records)
        write_events(store, args.batches * args.per_batch, per_batch=args.per_batch)
        alone = ingest_alone(store, tmp / "keys", tmp)
        watched = ingest_watched(store, tmp / "keys", tmp, args.pause)
    emit(
        "floor_readers",
        {
            "objects": args.records + args.batches + 8,
            "reader_pause_s": args.pause,
            "ingest_alone_s": round(alone, 2),
            "with_a_reader": watched,
            "with_reader_over_alone": round(watched["ingest_s"] / alone, 2),
        },
    )


if __name__ == "__main__":
    main()
