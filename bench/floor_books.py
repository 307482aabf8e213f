"""Closing a run's books: the end-of-run ingest and summary, in a fresh process.

    .venv/bin/python -m bench.floor_books [--runs 200] [--repeats 3] [--baseline-ref REF]

A store holds --runs past runs of one order each (13 signed lineage records: 4 renders,
4 composites, 4 encodes and the deliverable; 17 floor events in one batch: render,
composite, encode and gate per segment, and assemble delivering 12 s; the worker's
availability), ingested once. Then, --repeats times, one more run's objects are written
and a fresh Python process does what ``tasks.floor.close_floor`` does at the end of
every ``factory run`` that computed something: ``Warehouse.ingest`` of the store, then
``summary`` of the lists the run's artifact shows; both are timed inside that process
(imports apart), the first touch of the lake included (a
``factory run`` pays it every run). With --baseline-ref, the code at that git ref (a
temporary git worktree put first on PYTHONPATH) does the same with its own store and
warehouse, the two taking turns, so both see the same load.
"""

import argparse
import hashlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_run(store_dir: Path, keys_dir: Path, run: int) -> None:
    """One run's lineage records, floor events and availability, as a factory run writes
    them."""
    from factory.floor import FloorEvent, WorkerAvailability
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

    store = LocalStore(store_dir)
    if not keys_dir.exists():
        keys.init(keys_dir)
        keys.publish_public_keys(keys_dir, store)
    signer = keys.load_signer(keys_dir)
    records = RecordStore(store)
    order, flow = f"o{run}", f"f{run}"
    start = T0 + timedelta(minutes=run)
    model = ModelInfo(
        name=f"wan-{run % 3}",
        weights_fingerprint=_digest("weights"),
        training_provenance=[{"source": "stock footage"}],
        royalty_routing=[{"holder": "studio", "share": 0.7}, {"holder": "lab", "share": 0.3}],
    )
    written: dict[str, str] = {}

    def record(kind: str, parents: list[str]) -> None:
        digest = _digest(f"{kind}:{run}")
        signed = sign_record(
            LineageRecord(
                asset=AssetInfo(digest=digest, media_type="video/mp4", size=1, uri=f"x/{digest}"),
                parents=[
                    ParentLink(digest=_digest(f"{p}:{run}"), record_digest=written[p])
                    for p in parents
                ],
                stage=StageInfo(name=kind.split("-")[0], version="1"),
                order_id=order,
                flow_run_id=flow,
                task_run_id=f"t-{kind}",
                model=model if kind.startswith("render") else None,
                parameters={"frames": 48, "fps": 16} if kind.startswith("render") else {},
                device_class="cpu",
                device_seconds=1.0,
                started=start,
                ended=start + timedelta(seconds=1),
                code=CodeInfo(package_version="0.1.0"),
                key_id=signer.key_id,
            ),
            signer,
        )
        written[kind] = records.write(signed, digest, flow)

    events = []
    for segment in range(4):
        chain = [f"render-{segment}", f"composite-{segment}", f"encode-{segment}"]
        for step, kind in enumerate(chain):
            record(kind, chain[step - 1 : step] if step else [])
        for stage in ("render", "composite", "encode", "gate"):
            events.append((segment, stage, f"{stage}-{segment}" if stage != "gate" else None, 0))
    record("assemble", [f"encode-{segment}" for segment in range(4)])
    events.append((None, "assemble", "assemble", 12.0))
    worker = f"w{run % 8}"
    EventWriter(store).write_batch(
        flow,
        "final",
        [
            FloorEvent(
                order_id=order,
                flow_run_id=flow,
                task_run_id=f"t{n}",
                segment_index=segment,
                stage=stage,
                model=model.name if stage == "render" else None,
                device_class="cpu",
                worker_id=worker,
                started=start + timedelta(seconds=n),
                ended=start + timedelta(seconds=n + 1),
                device_seconds=0.9,
                status="completed",
                output_digest=_digest(f"{output}:{run}") if output else None,
                delivered_seconds=delivered,
            )
            for n, (segment, stage, output, delivered) in enumerate(events)
        ],
    )
    EventWriter(store).write_availability(
        worker,
        [
            WorkerAvailability(
                worker_id=worker,
                device_class="cpu",
                up_from=start,
                up_to=start + timedelta(minutes=1),
            )
        ],
        batch_id=flow,
    )


def close_books(work: Path) -> dict:
    """What the end of a ``factory run`` does with the floor, timed (in a fresh process)."""
    start = time.perf_counter()
    from storage.local import LocalStore
    from storage.trust import local_anchor
    from storage.warehouse import Warehouse, summary

    # (the package's name summary is the function: the module by its full name)
    floor_summary = importlib.import_module("storage.warehouse.summary")
    # The lists a run's artifact queries where the tree names them (since ea3c741), else all.
    shown = getattr(floor_summary, "MARKDOWN_LISTS", floor_summary.LISTS)
    imported = time.perf_counter()
    warehouse = Warehouse(work / "floor" / "catalog.sqlite", work / "floor" / "files")
    report = warehouse.ingest(LocalStore(work / "store"), local_anchor(work / "keys"))
    ingested = time.perf_counter()
    if shown is floor_summary.LISTS:
        summary(warehouse)
    else:
        summary(warehouse, lists=shown)
    done = time.perf_counter()
    return {
        "import_s": round(imported - start, 3),
        "ingest_s": round(ingested - imported, 3),
        "summary_s": round(done - ingested, 3),
        "books_s": round(done - imported, 3),
        "events_added": report.added.get("raw_events", 0),
        "storage": str(Path(sys.modules["storage"].__file__).parent.parent),
    }


def _child(tree: Path, work: Path, role: str, runs: int = 0) -> dict:
    """This file's ``role`` in a fresh process, importing the code of ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, __file__, "--role", role, "--work", str(work), "--runs", str(runs)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{role} in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-ref")
    parser.add_argument("--role", choices=("setup", "close"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "setup":
        for run in range(args.runs):
            write_run(args.work / "store", args.work / "keys", run)
        print(json.dumps(close_books(args.work)))
        return
    if args.role == "close":
        write_run(args.work / "store", args.work / "keys", args.runs)
        print(json.dumps(close_books(args.work)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-books-") as scratch:
        tmp = Path(scratch)
        trees = {"this tree": ROOT}
        if args.baseline_ref:
            baseline = tmp / "baseline"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline),
                 args.baseline_ref],
                check=True, capture_output=True,
            )  # fmt: skip
            trees = {args.baseline_ref: baseline, **trees}
        try:
            setup = {
                name: _child(tree, tmp / name, "setup", args.runs) for name, tree in trees.items()
            }
            closes: dict[str, list[dict]] = {name: [] for name in trees}
            for repeat in range(args.repeats):
                for name, tree in trees.items():
                    closes[name].append(_child(tree, tmp / name, "close", args.runs + repeat))
        finally:
            if args.baseline_ref:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                    check=False, capture_output=True,
                )  # fmt: skip
    results = {
        name: {
            "setup": setup[name],
            "closes": closes[name],
            **{
                f"median_{key}": round(statistics.median(c[key] for c in closes[name]), 3)
                for key in ("ingest_s", "summary_s", "books_s")
            },
        }
        for name in trees
    }
    from bench.common import emit

    emit("floor_books", {"runs": args.runs, "repeats": args.repeats, **results})


if __name__ == "__main__":
    main()
