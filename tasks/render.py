"""Render: one segment's frames from its diffusion pipeline, stored losslessly."""

from collections.abc import Mapping

from factory.assets import MEDIA_LOSSLESS_RGB_MP4, Recorded
from factory.orders import Order
from tasks.prepare import Production
from tasks.stage import DeviceTimer, Job, Output, StageSpec

# What the render measures of its own output for the gate: the lossless file cannot show it.
NONFINITE_SHARE = "nonfinite_share"


def plan_render(
    order: Order,
    production: Production,
    index: int | None,
    upstream: list[Recorded],
    attempt: int = 1,
) -> Job:
    assert index is not None
    segment = order.segments[index]
    take = segment.take(attempt, order.quality.attempts)
    model = production.models[take.model]
    recipe = {
        "prompt": segment.prompt,
        "negative_prompt": segment.negative_prompt,
        "seed": take.seed,
        "steps": segment.steps or model.entry.default_steps,
        "guidance": segment.guidance,
        "frames": segment.frame_count,
        "fps": segment.fps,
        "width": model.entry.render_width,
        "height": model.entry.render_height,
        "pipeline_class": model.entry.pipeline_class,
        "weights_fingerprint": model.fingerprint,
    }
    return Job(
        stage=RENDER,
        index=index,
        title=f"{order.id} segment {index} render",
        recipe=recipe,
        parameters={**recipe, "segment_index": index, "attempt": attempt},
        model=model,
    )


def compute_render(job: Job, inputs: Mapping[str, bytes], device: DeviceTimer) -> Output:
    """The segment at the model's native size, as a lossless RGB MP4, and the share of
    non-finite values the model returned (the gate reads it)."""
    # Imported here, not at the top: torch and diffusers take seconds to import, and a
    # run whose renders all come from the cache never needs them.
    from media.pipelines import get_pipeline, render_video
    from media.video import encode_lossless

    assert job.model is not None
    recipe = job.recipe
    handle = get_pipeline(job.model.path, str(recipe["pipeline_class"]))
    # The lock serialises calls on a shared pipeline (its scheduler holds state), so
    # device-seconds count only this segment's own compute, not the wait for the lock.
    with handle.lock, device():
        rendered = render_video(
            handle.pipe,
            prompt=recipe["prompt"],
            negative_prompt=recipe["negative_prompt"],
            seed=recipe["seed"],
            num_frames=recipe["frames"],
            width=recipe["width"],
            height=recipe["height"],
            steps=recipe["steps"],
            guidance=recipe["guidance"],
        )
    return Output(
        data=encode_lossless(rendered.frames, recipe["fps"]),
        metrics={NONFINITE_SHARE: rendered.nonfinite_share},
    )


# 2: the output carries its non-finite share for the gate (entries of 1 do not).
RENDER = StageSpec(
    name="render",
    version="2",
    media_type=MEDIA_LOSSLESS_RGB_MP4,
    action="created",
    plan=plan_render,
    compute=compute_render,
    on_accelerator=True,
)
