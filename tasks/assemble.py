"""Assemble: the encoded segments joined into the deliverable by stream copy (no re-encode)."""

from collections.abc import Mapping

from factory.assets import MEDIA_MP4, Recorded
from factory.orders import Order
from tasks.prepare import Production
from tasks.stage import DeviceTimer, Input, Job, StageSpec


def plan_assemble(
    order: Order, production: Production, index: int | None, upstream: list[Recorded]
) -> Job:
    fragmented = order.encode.fragmented
    return Job(
        stage=ASSEMBLE,
        index=None,
        title=f"{order.id} deliverable",
        recipe={"fragmented": fragmented, "segments": [ref.asset.digest for ref in upstream]},
        parameters={"fragmented": fragmented, "segments": len(upstream)},
        inputs=tuple(
            Input(recorded=ref, label=f"segment-{position}", title=f"segment {position}")
            for position, ref in enumerate(upstream)
        ),
        delivered_seconds=order.duration_s,
    )


def compute_assemble(job: Job, inputs: Mapping[str, bytes], device: DeviceTimer) -> bytes:
    # PyAV and numpy load only when a stage computes: a cached run needs neither.
    from media.video import concat_mp4

    parts = [inputs[item.label] for item in job.inputs]
    with device():
        return concat_mp4(parts, fragmented=bool(job.recipe["fragmented"]))


ASSEMBLE = StageSpec(
    name="assemble",
    version="1",
    media_type=MEDIA_MP4,
    action="assembled",
    plan=plan_assemble,
    compute=compute_assemble,
)
