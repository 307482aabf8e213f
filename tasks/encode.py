"""Encode: a composited segment to delivery H.264 (libx264, yuv420p) in MP4."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from factory.assets import MEDIA_MP4, Recorded, StageResult
from factory.orders import EncodeSpec, Segment
from media.video import decode_yuv420, encode_h264_yuv420
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
    write_record,
)

# 2: takes composite stage 2's yuv420p planes (stage 1 composites were RGB).
STAGE_VERSION = "2"


def encode_work(composited: Recorded, segment: Segment, index: int, spec: EncodeSpec) -> StageWork:
    """What encoding one composited segment means to the cache and the lineage record."""
    recipe = {**spec.model_dump(mode="json"), "fps": segment.fps, "source": composited.asset.digest}
    return StageWork(
        stage="encode",
        version=STAGE_VERSION,
        recipe=recipe,
        index=index,
        parameters={**recipe, "segment_index": index},
        parents=[composited],
    )


def encode_segment(
    store: ObjectStore,
    composited: Recorded,
    segment: Segment,
    index: int,
    spec: EncodeSpec,
    context: RunContext,
    cache: CacheMode = "use",
) -> StageResult:
    work = encode_work(composited, segment, index, spec)

    def compute() -> StageResult:
        return _encode(store, composited, segment, index, spec, context, work.parameters)

    return cached_stage(store, work, mode=cache, context=context, compute=compute)


def _encode(
    store: ObjectStore,
    composited: Recorded,
    segment: Segment,
    index: int,
    spec: EncodeSpec,
    context: RunContext,
    parameters: dict,
) -> StageResult:
    with stage_clock("encode", index) as clock:
        source = get_asset(store, composited.asset)
        planes = decode_yuv420(source)
        with clock.device():
            data = encode_h264_yuv420(
                planes, segment.fps, crf=spec.crf, preset=spec.preset, fragmented=spec.fragmented
            )
        signed = credential_signer().sign_encoded(
            data,
            title=f"{context.order_id} segment {index}",
            source=ingredient(composited, source, f"segment {index} composite", "composite"),
            provenance=media_assertion("encode", context, [composited], composited.models),
        )
        asset = put_asset(store, signed, MEDIA_MP4, (composited.asset.digest,))
        run = clock.run_record(asset)
        digest = write_record(
            store,
            asset,
            stage="encode",
            version=STAGE_VERSION,
            parents=[composited],
            context=context,
            run=run,
            parameters=parameters,
        )
        return StageResult(asset=asset, run=run, record_digest=digest, models=composited.models)


@task(
    name="encode",
    task_run_name="encode-{index}",
    retries=TASK_RETRIES,
    retry_delay_seconds=2,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
)
def encode_task(
    store: ObjectStore,
    composited: StageResult,
    segment: Segment,
    index: int,
    spec: EncodeSpec,
    context: RunContext,
    cache: CacheMode = "use",
) -> StageResult:
    with floor_event(store, context, "encode", index) as attempt:
        attempt.bytes_in = composited.asset.size
        attempt.result = encode_segment(store, composited, segment, index, spec, context, cache)
    return attempt.result
