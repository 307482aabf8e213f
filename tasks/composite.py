"""Composite: rendered frames onto the order's canvas, caption and logo, at output size."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from factory.assets import MEDIA_LOSSLESS_MP4, AssetRef, StageResult
from factory.compositing import Compositor
from factory.orders import CompositeSpec, Segment
from factory.video import decode_frames, encode_lossless
from storage.assets import get_asset, put_asset
from storage.objectstore import ObjectStore
from tasks.clock import is_transient, stage_clock

STAGE_VERSION = "1"


def composite_segment(
    store: ObjectStore,
    rendered: AssetRef,
    segment: Segment,
    index: int,
    spec: CompositeSpec,
    caption: str,
    background: AssetRef | None = None,
    logo: AssetRef | None = None,
) -> StageResult:
    """Lay one rendered segment onto its canvas and store the result losslessly."""
    with stage_clock("composite", index) as clock:
        frames = decode_frames(get_asset(store, rendered))
        compositor = Compositor(
            spec,
            segment.width,
            segment.height,
            caption,
            background_image=get_asset(store, background) if background else None,
            logo=get_asset(store, logo) if logo else None,
        )
        with clock.device():
            composed = compositor.compose(frames)
        parents = tuple(ref.digest for ref in (rendered, background, logo) if ref is not None)
        data = encode_lossless(composed, segment.fps)
        return clock.finish(put_asset(store, data, MEDIA_LOSSLESS_MP4, parents))


@task(
    name="composite",
    task_run_name="composite-{index}",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
)
def composite_task(
    store: ObjectStore,
    rendered: StageResult,
    segment: Segment,
    index: int,
    spec: CompositeSpec,
    caption: str,
    background: AssetRef | None = None,
    logo: AssetRef | None = None,
) -> StageResult:
    return composite_segment(store, rendered.asset, segment, index, spec, caption, background, logo)
