"""Assemble: the accepted segments joined into the deliverable by stream copy (no re-encode).

The deliverable suite judges the result (duration, size, segment starts against the
order); its verdict, with the verdict each segment was accepted on, is in the manifest
and the record, beside the segments' own manifests (each with its full verdict) in its
ingredients.
"""

from collections.abc import Mapping

from factory.assets import MEDIA_MP4, Recorded
from factory.orders import Order
from quality.targets import DeliverableTarget, deliverable_target
from quality.thresholds import Thresholds
from tasks.judging import judging
from tasks.prepare import Production
from tasks.provenance import segment_verdicts_assertion
from tasks.stage import DeviceTimer, Input, Job, Output, StageSpec


def plan_assemble(
    order: Order,
    production: Production,
    index: int | None,
    upstream: list[Recorded],
    attempt: int = 1,
) -> Job:
    fragmented = order.encode.fragmented
    verdicts = [ref.verdict for ref in upstream if ref.verdict is not None]
    recipe = {
        "fragmented": fragmented,
        "segments": [ref.asset.digest for ref in upstream],
        "thresholds": production.thresholds.model_dump(mode="json"),
        "target": deliverable_target(order).model_dump(mode="json"),
    }
    return Job(
        stage=ASSEMBLE,
        index=None,
        title=f"{order.id} deliverable",
        recipe=recipe,
        parameters={"fragmented": fragmented, "segments": len(upstream)},
        inputs=tuple(
            Input(recorded=ref, label=f"segment-{position}", title=f"segment {position}")
            for position, ref in enumerate(upstream)
        ),
        delivered_seconds=order.duration_s,
        assertions=segment_verdicts_assertion(verdicts) if verdicts else {},
    )


def compute_assemble(job: Job, inputs: Mapping[str, bytes], device: DeviceTimer) -> Output:
    """The segments joined, and the deliverable suite's verdict on the result."""
    # PyAV and numpy load only when a stage computes: a cached run needs neither.
    from media.video import concat_mp4

    recipe = job.recipe
    parts = [inputs[item.label] for item in job.inputs]
    with device():
        data = concat_mp4(parts, fragmented=bool(recipe["fragmented"]))
    with judging(Thresholds.model_validate(recipe["thresholds"])) as judge, device():
        verdict = judge.judge_deliverable_target(
            data, DeliverableTarget.model_validate(recipe["target"])
        )
    return Output(data=data, verdict=verdict)


# 2: the deliverable suite judges the result (its verdict is in the record and manifest).
ASSEMBLE = StageSpec(
    name="assemble",
    version="2",
    media_type=MEDIA_MP4,
    action="assembled",
    plan=plan_assemble,
    compute=compute_assemble,
)
