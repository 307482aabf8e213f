"""The segment cache: warm vs cold, one edited segment, and lookup cost per task.

    .venv/bin/python -m bench.cache [--order examples/demo.yaml] [--s3]

Runs the order cold into a fresh store, then warm (goal ≥ 20× faster), then with
one segment's seed changed (goal ≤ 0.15× the cold time, exactly one render; a new
seed each round); medians over --rounds; all
as `factory run` runs them in-process (no flow-run heartbeat against the ephemeral
API) and without the end-of-run warehouse ingest, whose cost is reported
separately as a warm run with it. The
ephemeral Prefect API is started by a warm-up run first. Lookup cost is the
median time of SegmentCache.lookup for a render and for a composite entry
(which includes re-hashing the cached object), on the local store and, with
--s3, on a SeaweedFS started on 127.0.0.1, where the order is also run cold and
warm against the bucket.
"""

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from bench.common import emit, median, timed
from cli.runner import local_run_settings
from factory.orders import load_order
from storage.cache import SegmentCache
from storage.local import LocalStore
from storage.objectstore import ObjectStore

EXAMPLES = Path(__file__).parent.parent / "examples"


def lookup_costs(store: ObjectStore, rounds: int = 20) -> dict[str, float]:
    cache = SegmentCache(store)
    costs = {}
    for stage in ("render", "composite"):
        entry = next(cache.entries(stage))
        times = [timed(lambda e=entry: cache.lookup(e.stage, e.key))[0] for _ in range(rounds)]
        costs[f"{stage}_lookup_ms"] = round(median(times) * 1000, 2)
        costs[f"{stage}_entry_mb"] = round(entry.asset.size / 1e6, 2)
    return costs


def copy_to(source: LocalStore, target: ObjectStore) -> None:
    for key in source.list("cache/entries/"):
        target.put(key, source.get(key))
        entry = source.get(key)
        from storage.cache import CacheEntry

        asset = CacheEntry.model_validate_json(entry).asset
        target.put(asset.key, source.get(asset.key))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--order", type=Path, default=EXAMPLES / "demo.yaml")
    parser.add_argument("--s3", action="store_true", help="also measure lookups on SeaweedFS")
    parser.add_argument("--rounds", type=int, default=3, help="warm and edited runs (medians)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    os.environ["FACTORY_HOME"] = str(work / "home")
    from flows.produce import produce

    produce(load_order(EXAMPLES / "tiny.yaml"), str(work / "warm-up"))
    order = load_order(args.order)
    store = str(work / "store")
    # As `factory run` runs it (cli.runner.local_run_settings), and without the
    # end-of-run warehouse ingest, whose cost is measured apart.
    with local_run_settings():
        cold_s, cold = timed(lambda: produce(order, store, floor=False))
        warm_times = []
        for _ in range(args.rounds):
            seconds, warm = timed(lambda: produce(order, store, floor=False))
            warm_times.append(seconds)
        edited_times, edited_renders = [], []
        for round_index in range(args.rounds):
            # A new seed each round, so each edited run really renders one segment.
            segments = list(order.segments)
            segments[5] = segments[5].model_copy(
                update={"seed": segments[5].seed + 1000 + round_index}
            )
            edited_order = order.model_copy(update={"segments": segments})
            seconds, edited = timed(lambda o=edited_order: produce(o, store, floor=False))
            edited_times.append(seconds)
            edited_renders.append(
                sum(1 for r in edited.runs if r.stage == "render" and not r.cache_hit)
            )
        warm_floor_s, _ = timed(lambda: produce(order, store, floor=True))
    warm_s, edited_s = median(warm_times), median(edited_times)
    results = {
        "order": args.order.name,
        "cold_s": round(cold_s, 3),
        "warm_s": round(warm_s, 3),
        "warm_speedup": round(cold_s / warm_s, 2),
        "warm_goal": ">= 20",
        "warm_identical_deliverable": warm.deliverable.digest == cold.deliverable.digest,
        "edited_s": round(edited_s, 3),
        "edited_share_of_cold": round(edited_s / cold_s, 4),
        "edited_goal": "<= 0.15",
        "edited_renders_per_run": edited_renders,
        "warm_s_all": [round(t, 3) for t in warm_times],
        "edited_s_all": [round(t, 3) for t in edited_times],
        "warm_with_floor_ingest_s": round(warm_floor_s, 3),
        "local": lookup_costs(LocalStore(work / "store")),
    }
    if args.s3:
        from storage.s3 import S3Store
        from tests.s3server import running_seaweedfs

        with running_seaweedfs(work / "weed") as server:
            os.environ.update(server.env())
            bucket = server.make_bucket()
            s3 = S3Store(bucket, "bench")
            copy_to(LocalStore(work / "store"), s3)
            results["s3"] = lookup_costs(s3)
            # The whole order against the bucket: every hit is a few round trips.
            s3_store = f"s3://{bucket}/runs"
            with local_run_settings():
                s3_cold_s, s3_cold = timed(lambda: produce(order, s3_store, floor=False))
                s3_warm = [
                    timed(lambda: produce(order, s3_store, floor=False)) for _ in range(args.rounds)
                ]
            results["s3"].update(
                cold_s=round(s3_cold_s, 3),
                warm_s=round(median([seconds for seconds, _ in s3_warm]), 3),
                warm_speedup=round(s3_cold_s / median([seconds for seconds, _ in s3_warm]), 2),
                warm_identical_deliverable=all(
                    d.deliverable.digest == s3_cold.deliverable.digest for _, d in s3_warm
                ),
            )
    emit("cache", results)


if __name__ == "__main__":
    main()
