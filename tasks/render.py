"""Render: one segment's frames from its diffusion pipeline, stored losslessly."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from factory.assets import MEDIA_LOSSLESS_MP4, StageResult
from factory.orders import Segment
from factory.pipelines import device_class, get_pipeline, render_frames
from factory.registry import ResolvedModel
from factory.video import encode_lossless
from storage.assets import put_asset
from storage.objectstore import ObjectStore
from tasks.clock import is_transient, stage_clock

STAGE_VERSION = "1"


def render_segment(
    store: ObjectStore, segment: Segment, index: int, model: ResolvedModel
) -> StageResult:
    """Render ``segment`` at the model's native size and store it as a lossless MP4."""
    with stage_clock("render", index, device_class()) as clock:
        handle = get_pipeline(model.path, model.entry.pipeline_class)
        # The lock serialises calls on a shared pipeline (its scheduler holds state), so
        # device-seconds count only this segment's own compute, not the wait for the lock.
        with handle.lock, clock.device():
            frames = render_frames(
                handle.pipe,
                prompt=segment.prompt,
                negative_prompt=segment.negative_prompt,
                seed=segment.seed,
                num_frames=segment.frame_count,
                width=model.entry.render_width,
                height=model.entry.render_height,
                steps=segment.steps or model.entry.default_steps,
                guidance=segment.guidance,
            )
        asset = put_asset(store, encode_lossless(frames, segment.fps), MEDIA_LOSSLESS_MP4)
        return clock.finish(asset)


@task(
    name="render",
    task_run_name="render-{index}",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
)
def render_task(
    store: ObjectStore, segment: Segment, index: int, model: ResolvedModel
) -> StageResult:
    return render_segment(store, segment, index, model)
