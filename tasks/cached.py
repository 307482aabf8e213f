"""Run a stage through the segment cache: reuse an identical earlier output, or compute once.

Every reuse still writes its own signed lineage record (``reused_from`` the
original), and its run record says cache hit with zero device-seconds.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import JsonValue

from factory.assets import Recorded, RunRecord, Stage, StageResult
from factory.registry import ResolvedModel
from storage.cache import CacheEntry, CacheMode, SegmentCache, cache_key
from storage.objectstore import ObjectStore
from tasks.clock import stage_clock
from tasks.provenance import RunContext, write_record

log = logging.getLogger("factory.cache")


@dataclass(frozen=True)
class StageWork:
    """One stage's job as the cache and the lineage record see it, before it runs.

    ``recipe`` is everything that determines the output (it makes the cache key);
    ``parameters`` is what the lineage record shows (the recipe plus, say, the
    segment index, which must not change the key).
    """

    stage: Stage
    version: str
    recipe: dict[str, JsonValue]
    index: int | None
    parameters: dict[str, JsonValue]
    parents: list[Recorded] = field(default_factory=list)
    model: ResolvedModel | None = None

    @property
    def key(self) -> str:
        return cache_key({"stage": self.stage, "version": self.version, **self.recipe})


def reuse_cached(store: ObjectStore, work: StageWork, context: RunContext) -> StageResult | None:
    """The cached output of ``work`` with this run's reuse record, or None on a miss.

    An unusable entry (missing or corrupted object) is a miss here; the stage's own
    run finds it again, recomputes, repairs the entry and reports it.
    """
    started, start = datetime.now(UTC), time.perf_counter()
    found = SegmentCache(store).lookup(work.stage, work.key)
    if found.entry is None:
        return None
    return _reuse(store, work, context, found.entry, started, start)


def cached_stage(
    store: ObjectStore,
    work: StageWork,
    *,
    mode: CacheMode,
    context: RunContext,
    compute: Callable[[], StageResult],
) -> StageResult:
    """The stage's result, from the cache when ``mode`` allows and an entry checks out."""
    if mode == "off":
        return compute()
    cache = SegmentCache(store)
    if mode == "refresh":
        result = compute()
        cache.put(_entry(work, result), replace=True)
        return result
    started, start = datetime.now(UTC), time.perf_counter()
    found = cache.lookup(work.stage, work.key)
    if found.entry is not None:
        return _reuse(store, work, context, found.entry, started, start)
    if found.problem:
        log.warning(
            "cache entry for %s %s unusable, recomputing: %s", work.stage, work.key, found.problem
        )
    with cache.single_flight(work.stage, work.key) as produced_meanwhile:
        if produced_meanwhile is not None:
            return _reuse(store, work, context, produced_meanwhile, started, start)
        result = compute()
        cache.put(_entry(work, result), replace=found.problem is not None)
    if found.problem:
        run = result.run.model_copy(update={"cache_note": found.problem})
        return result.model_copy(update={"run": run})
    return result


def _reuse(
    store: ObjectStore,
    work: StageWork,
    context: RunContext,
    entry: CacheEntry,
    started: datetime,
    start: float,
) -> StageResult:
    run = RunRecord(
        stage=work.stage,
        segment_index=work.index,
        device_class=entry.device_class,
        device_seconds=0.0,
        wall_seconds=time.perf_counter() - start,
        started=started,
        ended=datetime.now(UTC),
        output_digest=entry.asset.digest,
        cache_hit=True,
    )
    with stage_clock(work.stage, work.index, entry.device_class):
        write_record(
            store,
            entry.asset,
            stage=work.stage,
            version=work.version,
            parents=work.parents,
            context=context,
            run=run,
            model=work.model,
            parameters=work.parameters,
            reused_from=entry.record_digest,
        )
    # Children link to the producing record, which `verify` walks; the reuse
    # record is this run's account of using it.
    return StageResult(
        asset=entry.asset, run=run, record_digest=entry.record_digest, models=entry.models
    )


def _entry(work: StageWork, result: StageResult) -> CacheEntry:
    return CacheEntry(
        stage=work.stage,
        key=work.key,
        asset=result.asset,
        record_digest=result.record_digest,
        models=result.models,
        device_class=result.run.device_class,
        device_seconds=result.run.device_seconds,
        created=result.run.ended,
    )
