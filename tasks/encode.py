"""Encode: a composited segment to delivery H.264 (libx264, yuv420p) in MP4."""

from collections.abc import Mapping

from factory.assets import MEDIA_MP4, Recorded
from factory.orders import Order
from tasks.prepare import Production
from tasks.stage import DeviceTimer, Input, Job, StageSpec


def plan_encode(
    order: Order,
    production: Production,
    index: int | None,
    upstream: list[Recorded],
    attempt: int = 1,
) -> Job:
    assert index is not None
    (composited,) = upstream
    recipe = {
        **order.encode.model_dump(mode="json"),
        "fps": order.segments[index].fps,
        "source": composited.asset.digest,
    }
    return Job(
        stage=ENCODE,
        index=index,
        title=f"{order.id} segment {index}",
        recipe=recipe,
        parameters={**recipe, "segment_index": index},
        inputs=(
            Input(
                recorded=composited,
                label="composite",
                title=f"segment {index} composite",
                role="parent",
            ),
        ),
    )


def compute_encode(job: Job, inputs: Mapping[str, bytes], device: DeviceTimer) -> bytes:
    # PyAV and numpy load only when a stage computes: a cached run needs neither.
    from media.video import decode_yuv420, encode_h264_yuv420

    recipe = job.recipe
    planes = decode_yuv420(inputs["composite"])
    with device():
        return encode_h264_yuv420(
            planes,
            recipe["fps"],
            crf=recipe["crf"],
            preset=recipe["preset"],
            fragmented=recipe["fragmented"],
        )


# 2: takes composite stage 2's yuv420p planes (stage 1 composites were RGB).
ENCODE = StageSpec(
    name="encode",
    version="2",
    media_type=MEDIA_MP4,
    action="transcoded",
    plan=plan_encode,
    compute=compute_encode,
)
