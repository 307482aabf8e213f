"""Composite: rendered frames onto the order's canvas, caption and logo, at output size."""

from collections.abc import Mapping

from factory.assets import MEDIA_LOSSLESS_YUV420_MP4, Recorded
from factory.orders import CompositeSpec, Order
from media.captions import caption_font
from tasks.prepare import Production
from tasks.stage import DeviceTimer, Input, Job, StageSpec

# The spec's per-order fields: the caption is per segment, the images are inputs.
_PER_ORDER = {"captions", "background_image", "logo"}
_SPEC_FIELDS = [name for name in CompositeSpec.model_fields if name not in _PER_ORDER]


def plan_composite(
    order: Order,
    production: Production,
    index: int | None,
    upstream: list[Recorded],
    attempt: int = 1,
) -> Job:
    assert index is not None
    (rendered,) = upstream
    segment = order.segments[index]
    background, logo = production.background, production.logo
    caption = order.caption_for(index)
    recipe = {
        **order.composite.model_dump(mode="json", exclude=_PER_ORDER),
        "caption": caption,
        "width": segment.width,
        "height": segment.height,
        "fps": segment.fps,
        "render": rendered.asset.digest,
        "background": background.asset.digest if background else None,
        "logo": logo.asset.digest if logo else None,
    }
    # Only captions beyond the built-in font's ASCII name their font: every other recipe,
    # and so every cache key made before the caption fonts were added, stays the same.
    if (font := caption_font(caption).recipe) is not None:
        recipe["caption_font"] = font
    components = [
        Input(recorded=ref, label=role, title=role)
        for role, ref in (("background", background), ("logo", logo))
        if ref is not None
    ]
    return Job(
        stage=COMPOSITE,
        index=index,
        title=f"{order.id} segment {index} composite",
        recipe=recipe,
        parameters={**recipe, "segment_index": index},
        inputs=(
            Input(
                recorded=rendered, label="render", title=f"segment {index} render", role="parent"
            ),
            *components,
        ),
    )


def compute_composite(job: Job, inputs: Mapping[str, bytes], device: DeviceTimer) -> bytes:
    """The render laid onto its canvas, kept losslessly in the deliverable's pixel format.

    yuv420p is half the bytes of RGB, and the encode then converts nothing.
    """
    # Compositing scales with torch: imported only when a composite is computed, so a
    # run served from the cache never imports it.
    from media.compositing import Compositor
    from media.video import decode_frames, encode_lossless_yuv420, rgb_to_yuv420

    recipe = job.recipe
    compositor = Compositor(
        CompositeSpec.model_validate({name: recipe[name] for name in _SPEC_FIELDS}),
        recipe["width"],
        recipe["height"],
        recipe["caption"],
        background_image=inputs.get("background"),
        logo=inputs.get("logo"),
    )
    frames = decode_frames(inputs["render"])
    with device():
        composed = rgb_to_yuv420(compositor.compose(frames))
    return encode_lossless_yuv420(composed, recipe["fps"])


# 2: stored as lossless yuv420p (was lossless RGB).
COMPOSITE = StageSpec(
    name="composite",
    version="2",
    media_type=MEDIA_LOSSLESS_YUV420_MP4,
    action="composited",
    plan=plan_composite,
    compute=compute_composite,
)
