"""Assemble: the encoded segments joined into the deliverable by stream copy (no re-encode)."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from factory.assets import MEDIA_MP4, AssetRef, StageResult
from factory.video import concat_mp4
from storage.assets import get_asset, put_asset
from storage.objectstore import ObjectStore
from tasks.clock import is_transient, stage_clock

STAGE_VERSION = "1"


def assemble_segments(
    store: ObjectStore, segments: list[AssetRef], *, fragmented: bool
) -> StageResult:
    with stage_clock("assemble", None) as clock:
        parts = [get_asset(store, ref) for ref in segments]
        with clock.device():
            data = concat_mp4(parts, fragmented=fragmented)
        parents = tuple(ref.digest for ref in segments)
        return clock.finish(put_asset(store, data, MEDIA_MP4, parents))


@task(
    name="assemble",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
)
def assemble_task(
    store: ObjectStore, encoded: list[StageResult], *, fragmented: bool
) -> StageResult:
    return assemble_segments(store, [result.asset for result in encoded], fragmented=fragmented)
