"""Encode: a composited segment to delivery H.264 (libx264, yuv420p) in MP4."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from factory.assets import MEDIA_MP4, AssetRef, StageResult
from factory.orders import EncodeSpec, Segment
from factory.video import decode_frames, encode_h264
from storage.assets import get_asset, put_asset
from storage.objectstore import ObjectStore
from tasks.clock import is_transient, stage_clock

STAGE_VERSION = "1"


def encode_segment(
    store: ObjectStore, composited: AssetRef, segment: Segment, index: int, spec: EncodeSpec
) -> StageResult:
    with stage_clock("encode", index) as clock:
        frames = decode_frames(get_asset(store, composited))
        with clock.device():
            data = encode_h264(
                frames, segment.fps, crf=spec.crf, preset=spec.preset, fragmented=spec.fragmented
            )
        return clock.finish(put_asset(store, data, MEDIA_MP4, (composited.digest,)))


@task(
    name="encode",
    task_run_name="encode-{index}",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
)
def encode_task(
    store: ObjectStore, composited: StageResult, segment: Segment, index: int, spec: EncodeSpec
) -> StageResult:
    return encode_segment(store, composited.asset, segment, index, spec)
