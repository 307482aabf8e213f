"""Assemble: the encoded segments joined into the deliverable by stream copy (no re-encode)."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from factory.assets import MEDIA_MP4, Recorded, StageResult
from media.video import concat_mp4
from storage.assets import get_asset, put_asset
from storage.cache import CacheMode
from storage.objectstore import ObjectStore
from tasks.cached import StageWork, cached_stage
from tasks.clock import TASK_RETRIES, is_transient, stage_clock
from tasks.floor import floor_event
from tasks.provenance import (
    RunContext,
    credential_signer,
    ingredient,
    media_assertion,
    models_of,
    write_record,
)

STAGE_VERSION = "1"


def assemble_work(segments: list[Recorded], *, fragmented: bool) -> StageWork:
    """What joining the encoded segments means to the cache and the lineage record."""
    return StageWork(
        stage="assemble",
        version=STAGE_VERSION,
        recipe={"fragmented": fragmented, "segments": [ref.asset.digest for ref in segments]},
        index=None,
        parameters={"fragmented": fragmented, "segments": len(segments)},
        parents=list(segments),
    )


def assemble_segments(
    store: ObjectStore,
    segments: list[Recorded],
    *,
    fragmented: bool,
    context: RunContext,
    cache: CacheMode = "use",
) -> StageResult:
    work = assemble_work(segments, fragmented=fragmented)

    def compute() -> StageResult:
        return _assemble(store, segments, fragmented, context, work.parameters)

    return cached_stage(store, work, mode=cache, context=context, compute=compute)


def _assemble(
    store: ObjectStore,
    segments: list[Recorded],
    fragmented: bool,
    context: RunContext,
    parameters: dict,
) -> StageResult:
    with stage_clock("assemble", None) as clock:
        parts = [get_asset(store, ref.asset) for ref in segments]
        with clock.device():
            data = concat_mp4(parts, fragmented=fragmented)
        models = models_of(segments)
        signed = credential_signer().sign_assembled(
            data,
            title=f"{context.order_id} deliverable",
            segments=[
                ingredient(ref, part, f"segment {index}", f"segment-{index}")
                for index, (ref, part) in enumerate(zip(segments, parts, strict=True))
            ],
            provenance=media_assertion("assemble", context, segments, models),
        )
        asset = put_asset(store, signed, MEDIA_MP4, tuple(ref.asset.digest for ref in segments))
        run = clock.run_record(asset)
        digest = write_record(
            store,
            asset,
            stage="assemble",
            version=STAGE_VERSION,
            parents=list(segments),
            context=context,
            run=run,
            parameters=parameters,
        )
        return StageResult(asset=asset, run=run, record_digest=digest, models=models)


@task(
    name="assemble",
    retries=TASK_RETRIES,
    retry_delay_seconds=2,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
)
def assemble_task(
    store: ObjectStore,
    encoded: list[StageResult],
    *,
    fragmented: bool,
    context: RunContext,
    cache: CacheMode = "use",
    delivered_seconds: float = 0.0,
) -> StageResult:
    with floor_event(store, context, "assemble", None) as attempt:
        attempt.bytes_in = sum(result.asset.size for result in encoded)
        attempt.delivered_seconds = delivered_seconds
        attempt.result = assemble_segments(
            store, list(encoded), fragmented=fragmented, context=context, cache=cache
        )
    return attempt.result
