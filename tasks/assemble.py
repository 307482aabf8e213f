"""Assemble: the accepted segments joined into the deliverable by stream copy (no re-encode).

Its manifest names the verdict each segment was accepted on, beside the segments' own
manifests (each carrying its full verdict) in its ingredients.
"""

from collections.abc import Mapping

from factory.assets import MEDIA_MP4, Recorded
from factory.orders import Order
from media.video import concat_mp4
from tasks.prepare import Production
from tasks.provenance import segment_verdicts_assertion
from tasks.stage import DeviceTimer, Input, Job, StageSpec


def plan_assemble(
    order: Order,
    production: Production,
    index: int | None,
    upstream: list[Recorded],
    attempt: int = 1,
) -> Job:
    fragmented = order.encode.fragmented
    verdicts = [ref.verdict for ref in upstream if ref.verdict is not None]
    assertions = segment_verdicts_assertion(verdicts) if verdicts else {}
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
        assertions=assertions,
    )


def compute_assemble(job: Job, inputs: Mapping[str, bytes], device: DeviceTimer) -> bytes:
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
