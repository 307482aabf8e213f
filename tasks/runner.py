"""The one stage runner: cache lookup and lease, compute, sign, write, record, progress.

Every stage, and the reuse pass, goes through here; a stage only declares what it
is (``tasks.stage.StageSpec``). Every reuse still writes its own signed lineage
record (``reused_from`` the original), and its run record says cache hit with zero
device-seconds.
"""

import logging
import time
from datetime import UTC, datetime

from factory.assets import RunRecord, StageResult
from media.credentials import Ingredient
from storage.assets import get_asset, put_asset
from storage.cache import CacheEntry, CacheMode, SegmentCache
from tasks.clock import stage_clock
from tasks.openlineage_runs import lineage_of_stage
from tasks.provenance import RunContext, media_assertion, write_record
from tasks.resources import Resources
from tasks.stage import Input, Job

log = logging.getLogger("factory.cache")


def run_stage(resources: Resources, job: Job, context: RunContext, mode: CacheMode) -> StageResult:
    """The job's result, from the cache when ``mode`` allows and an entry checks out.

    ``mode``: "use" reuses an identical earlier output (and of two workers that miss at
    once, one computes while the other waits), "off" computes without reading the cache,
    "refresh" computes and replaces the entry.
    """
    if mode == "off":
        return produce(resources, job, context)
    cache = SegmentCache(resources.store)
    if mode == "refresh":
        result = produce(resources, job, context)
        cache.put(_entry(job, result), replace=True)
        return result
    started, start = datetime.now(UTC), time.perf_counter()
    found = cache.lookup(job.stage.name, job.key)
    if found.entry is not None:
        return _reuse(resources, job, context, found.entry, started, start)
    if found.problem:
        log.warning(
            "cache entry for %s %s unusable, recomputing: %s",
            job.stage.name,
            job.key,
            found.problem,
        )
    with cache.single_flight(job.stage.name, job.key) as produced_meanwhile:
        if produced_meanwhile is not None:
            return _reuse(resources, job, context, produced_meanwhile, started, start)
        result = produce(resources, job, context)
        cache.put(_entry(job, result), replace=found.problem is not None)
    if found.problem:
        run = result.run.model_copy(update={"cache_note": found.problem})
        return result.model_copy(update={"run": run})
    return result


def reuse_cached(resources: Resources, job: Job, context: RunContext) -> StageResult | None:
    """The cached output of ``job`` with this run's reuse record, or None on a miss.

    An unusable entry (missing or corrupted object) is a miss here; the stage's own
    run finds it again, recomputes, repairs the entry and reports it.
    """
    started, start = datetime.now(UTC), time.perf_counter()
    found = SegmentCache(resources.store).lookup(job.stage.name, job.key)
    if found.entry is None:
        return None
    return _reuse(resources, job, context, found.entry, started, start)


@lineage_of_stage
def produce(resources: Resources, job: Job, context: RunContext) -> StageResult:
    """Compute the job's output, sign it (C2PA), store it and write its lineage record."""
    stage, store = job.stage, resources.store
    device = resources.device_class if stage.on_accelerator else "cpu"
    with stage_clock(stage.name, job.index, device) as clock:
        inputs = {item.label: get_asset(store, item.recorded.asset) for item in job.inputs}
        data = stage.compute(job, inputs, clock.device)
        parent = [_ingredient(item, inputs) for item in job.inputs if item.role == "parent"]
        signed = resources.signers.credentials.sign(
            data,
            action=stage.action,
            title=job.title,
            parent=parent[0] if parent else None,
            components=[_ingredient(i, inputs) for i in job.inputs if i.role == "component"],
            provenance=media_assertion(stage.name, context, job.parents, job.models),
        )
        asset = put_asset(
            store, signed, stage.media_type, tuple(ref.asset.digest for ref in job.parents)
        )
        run = clock.run_record(asset)
        digest = write_record(
            resources,
            asset,
            stage=stage.name,
            version=stage.version,
            parents=job.parents,
            context=context,
            run=run,
            model=job.model.info if job.model else None,
            parameters=job.parameters,
        )
        return StageResult(asset=asset, run=run, record_digest=digest, models=job.models)


def _ingredient(item: Input, inputs: dict[str, bytes]) -> Ingredient:
    media_type = item.recorded.asset.media_type.split(";")[0]
    return Ingredient(
        data=inputs[item.label], title=item.title, label=item.label, format=media_type
    )


@lineage_of_stage
def _reuse(
    resources: Resources,
    job: Job,
    context: RunContext,
    entry: CacheEntry,
    started: datetime,
    start: float,
) -> StageResult:
    run = RunRecord(
        stage=job.stage.name,
        segment_index=job.index,
        device_class=entry.device_class,
        device_seconds=0.0,
        wall_seconds=time.perf_counter() - start,
        started=started,
        ended=datetime.now(UTC),
        output_digest=entry.asset.digest,
        cache_hit=True,
    )
    with stage_clock(job.stage.name, job.index, entry.device_class):
        write_record(
            resources,
            entry.asset,
            stage=job.stage.name,
            version=job.stage.version,
            parents=job.parents,
            context=context,
            run=run,
            model=job.model.info if job.model else None,
            parameters=job.parameters,
            reused_from=entry.record_digest,
        )
    # Children link to the producing record, which `verify` walks; the reuse record is
    # this run's account of using it.
    return StageResult(
        asset=entry.asset, run=run, record_digest=entry.record_digest, models=entry.models
    )


def _entry(job: Job, result: StageResult) -> CacheEntry:
    return CacheEntry(
        stage=job.stage.name,
        key=job.key,
        asset=result.asset,
        record_digest=result.record_digest,
        models=result.models,
        device_class=result.run.device_class,
        device_seconds=result.run.device_seconds,
        created=result.run.ended,
    )
