"""Run a stage through the segment cache: reuse an identical earlier output, or compute once.

Every reuse still writes its own signed lineage record (``reused_from`` the
original), and its run record says cache hit with zero device-seconds.
"""

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import JsonValue

from factory.assets import Recorded, RunRecord, Stage, StageResult
from factory.registry import ResolvedModel
from storage.cache import CacheEntry, CacheMode, SegmentCache, cache_key
from storage.objectstore import ObjectStore
from tasks.clock import stage_clock
from tasks.provenance import RunContext, write_record

log = logging.getLogger("factory.cache")


def cached_stage(
    store: ObjectStore,
    *,
    stage: Stage,
    version: str,
    recipe: dict[str, JsonValue],
    mode: CacheMode,
    context: RunContext,
    index: int | None,
    parents: list[Recorded],
    parameters: dict[str, JsonValue],
    compute: Callable[[], StageResult],
    model: ResolvedModel | None = None,
) -> StageResult:
    """The stage's result, from the cache when ``mode`` allows and an entry checks out."""
    if mode == "off":
        return compute()
    cache = SegmentCache(store)
    key = cache_key({"stage": stage, "version": version, **recipe})
    if mode == "refresh":
        result = compute()
        cache.put(_entry(stage, key, result), replace=True)
        return result
    started, start = datetime.now(UTC), time.perf_counter()

    def reuse(entry: CacheEntry) -> StageResult:
        run = RunRecord(
            stage=stage,
            segment_index=index,
            device_class=entry.device_class,
            device_seconds=0.0,
            wall_seconds=time.perf_counter() - start,
            started=started,
            ended=datetime.now(UTC),
            output_digest=entry.asset.digest,
            cache_hit=True,
        )
        with stage_clock(stage, index, entry.device_class):
            write_record(
                store,
                entry.asset,
                stage=stage,
                version=version,
                parents=parents,
                context=context,
                run=run,
                model=model,
                parameters=parameters,
                reused_from=entry.record_digest,
            )
        # Children link to the producing record, which `verify` walks; the reuse
        # record is this run's account of using it.
        return StageResult(
            asset=entry.asset, run=run, record_digest=entry.record_digest, models=entry.models
        )

    found = cache.lookup(stage, key)
    if found.entry is not None:
        return reuse(found.entry)
    if found.problem:
        log.warning("cache entry for %s %s unusable, recomputing: %s", stage, key, found.problem)
    with cache.single_flight(stage, key) as produced_meanwhile:
        if produced_meanwhile is not None:
            return reuse(produced_meanwhile)
        result = compute()
        cache.put(_entry(stage, key, result), replace=found.problem is not None)
    if found.problem:
        run = result.run.model_copy(update={"cache_note": found.problem})
        return result.model_copy(update={"run": run})
    return result


def _entry(stage: Stage, key: str, result: StageResult) -> CacheEntry:
    return CacheEntry(
        stage=stage,
        key=key,
        asset=result.asset,
        record_digest=result.record_digest,
        models=result.models,
        device_class=result.run.device_class,
        device_seconds=result.run.device_seconds,
        created=result.run.ended,
    )
