"""Composite: rendered frames onto the order's canvas, caption and logo, at output size."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from factory.assets import MEDIA_LOSSLESS_YUV420_MP4, Recorded, StageResult
from factory.orders import CompositeSpec, Segment
from media.compositing import Compositor
from media.video import decode_frames, encode_lossless_yuv420, rgb_to_yuv420
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

# 2: stored as lossless yuv420p (was lossless RGB).
STAGE_VERSION = "2"


def composite_work(
    rendered: Recorded,
    segment: Segment,
    index: int,
    spec: CompositeSpec,
    caption: str,
    background: Recorded | None = None,
    logo: Recorded | None = None,
) -> StageWork:
    """What compositing one rendered segment means to the cache and the lineage record."""
    recipe = {
        **spec.model_dump(mode="json", exclude={"captions", "background_image", "logo"}),
        "caption": caption,
        "width": segment.width,
        "height": segment.height,
        "fps": segment.fps,
        "render": rendered.asset.digest,
        "background": background.asset.digest if background else None,
        "logo": logo.asset.digest if logo else None,
    }
    return StageWork(
        stage="composite",
        version=STAGE_VERSION,
        recipe=recipe,
        index=index,
        parameters={**recipe, "segment_index": index},
        parents=[ref for ref in (rendered, background, logo) if ref is not None],
    )


def composite_segment(
    store: ObjectStore,
    rendered: Recorded,
    segment: Segment,
    index: int,
    spec: CompositeSpec,
    caption: str,
    context: RunContext,
    background: Recorded | None = None,
    logo: Recorded | None = None,
    cache: CacheMode = "use",
) -> StageResult:
    """Lay one rendered segment onto its canvas and store the result losslessly."""
    work = composite_work(rendered, segment, index, spec, caption, background, logo)

    def compute() -> StageResult:
        return _composite(
            store,
            rendered,
            segment,
            index,
            spec,
            caption,
            context,
            background,
            logo,
            work.parameters,
        )

    return cached_stage(store, work, mode=cache, context=context, compute=compute)


def _composite(
    store: ObjectStore,
    rendered: Recorded,
    segment: Segment,
    index: int,
    spec: CompositeSpec,
    caption: str,
    context: RunContext,
    background: Recorded | None,
    logo: Recorded | None,
    parameters: dict,
) -> StageResult:
    with stage_clock("composite", index) as clock:
        render_bytes = get_asset(store, rendered.asset)
        frames = decode_frames(render_bytes)
        components = {
            role: (ref, get_asset(store, ref.asset))
            for role, ref in (("background", background), ("logo", logo))
            if ref is not None
        }
        compositor = Compositor(
            spec,
            segment.width,
            segment.height,
            caption,
            background_image=components["background"][1] if "background" in components else None,
            logo=components["logo"][1] if "logo" in components else None,
        )
        with clock.device():
            # Kept in the deliverable's pixel format: half the bytes of RGB, and the
            # encode then converts nothing.
            composed = rgb_to_yuv420(compositor.compose(frames))
        parents = [rendered, *(ref for ref, _ in components.values())]
        signed = credential_signer().sign_composite(
            encode_lossless_yuv420(composed, segment.fps),
            title=f"{context.order_id} segment {index} composite",
            render=ingredient(rendered, render_bytes, f"segment {index} render", "render"),
            components=[
                ingredient(ref, data, role, role) for role, (ref, data) in components.items()
            ],
            provenance=media_assertion("composite", context, parents, rendered.models),
        )
        asset = put_asset(
            store, signed, MEDIA_LOSSLESS_YUV420_MP4, tuple(ref.asset.digest for ref in parents)
        )
        run = clock.run_record(asset)
        digest = write_record(
            store,
            asset,
            stage="composite",
            version=STAGE_VERSION,
            parents=parents,
            context=context,
            run=run,
            parameters=parameters,
        )
        return StageResult(asset=asset, run=run, record_digest=digest, models=rendered.models)


@task(
    name="composite",
    task_run_name="composite-{index}",
    retries=TASK_RETRIES,
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
    context: RunContext,
    background: Recorded | None = None,
    logo: Recorded | None = None,
    cache: CacheMode = "use",
) -> StageResult:
    with floor_event(store, context, "composite", index) as attempt:
        attempt.bytes_in = sum(ref.asset.size for ref in (rendered, background, logo) if ref)
        attempt.result = composite_segment(
            store, rendered, segment, index, spec, caption, context, background, logo, cache
        )
    return attempt.result
