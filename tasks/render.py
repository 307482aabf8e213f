"""Render: one segment's frames from its diffusion pipeline, stored losslessly."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from factory.assets import MEDIA_LOSSLESS_RGB_MP4, StageResult
from factory.orders import Segment
from factory.registry import ResolvedModel
from media.pipelines import device_class, get_pipeline, render_frames
from media.video import encode_lossless
from storage.assets import put_asset
from storage.cache import CacheMode
from storage.objectstore import ObjectStore
from tasks.cached import StageWork, cached_stage
from tasks.clock import TASK_RETRIES, is_transient, stage_clock
from tasks.floor import floor_event
from tasks.provenance import RunContext, credential_signer, media_assertion, write_record

STAGE_VERSION = "1"


def render_work(segment: Segment, index: int, model: ResolvedModel) -> StageWork:
    """What rendering ``segment`` means to the cache and the lineage record."""
    recipe = {
        "prompt": segment.prompt,
        "negative_prompt": segment.negative_prompt,
        "seed": segment.seed,
        "steps": segment.steps or model.entry.default_steps,
        "guidance": segment.guidance,
        "frames": segment.frame_count,
        "fps": segment.fps,
        "width": model.entry.render_width,
        "height": model.entry.render_height,
        "pipeline_class": model.entry.pipeline_class,
        "weights_fingerprint": model.fingerprint,
    }
    return StageWork(
        stage="render",
        version=STAGE_VERSION,
        recipe=recipe,
        index=index,
        parameters={**recipe, "segment_index": index},
        model=model,
    )


def render_segment(
    store: ObjectStore,
    segment: Segment,
    index: int,
    model: ResolvedModel,
    context: RunContext,
    cache: CacheMode = "use",
) -> StageResult:
    """Render ``segment`` at the model's native size and store it as a lossless MP4."""
    work = render_work(segment, index, model)

    def compute() -> StageResult:
        return _render(store, segment, index, model, context, work.parameters)

    return cached_stage(store, work, mode=cache, context=context, compute=compute)


def _render(
    store: ObjectStore,
    segment: Segment,
    index: int,
    model: ResolvedModel,
    context: RunContext,
    parameters: dict,
) -> StageResult:
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
                steps=parameters["steps"],
                guidance=segment.guidance,
            )
        signed = credential_signer().sign_rendered(
            encode_lossless(frames, segment.fps),
            title=f"{context.order_id} segment {index} render",
            provenance=media_assertion("render", context, [], [model]),
        )
        asset = put_asset(store, signed, MEDIA_LOSSLESS_RGB_MP4)
        run = clock.run_record(asset)
        digest = write_record(
            store,
            asset,
            stage="render",
            version=STAGE_VERSION,
            parents=[],
            context=context,
            run=run,
            model=model,
            parameters=parameters,
        )
        return StageResult(asset=asset, run=run, record_digest=digest, models=[model])


@task(
    name="render",
    task_run_name="render-{index}",
    retries=TASK_RETRIES,
    retry_delay_seconds=2,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
)
def render_task(
    store: ObjectStore,
    segment: Segment,
    index: int,
    model: ResolvedModel,
    context: RunContext,
    cache: CacheMode = "use",
) -> StageResult:
    with floor_event(store, context, "render", index, model.entry.name) as attempt:
        attempt.result = render_segment(store, segment, index, model, context, cache)
    return attempt.result
