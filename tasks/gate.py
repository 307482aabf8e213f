"""Gate: the quality suite's verdict on an encoded segment, signed into a copy of it.

The gate judges what is delivered (the encoded segment's decoded frames) together
with what only the render could see (its non-finite share). Its output is the same
video with a manifest that opens the encoded segment and asserts the verdict, and a
lineage record that carries it: accepted or not, every judgement is provenance. The
flow assembles only accepted segments and re-renders the rest (``Segment.take``).
"""

from collections.abc import Mapping

from factory.assets import MEDIA_MP4, Recorded
from factory.orders import Order
from quality.targets import SegmentTarget, segment_target
from quality.thresholds import Thresholds
from tasks.judging import judge_segment
from tasks.prepare import Production
from tasks.render import NONFINITE_SHARE
from tasks.stage import DeviceTimer, Input, Job, Output, StageSpec


def plan_gate(
    order: Order,
    production: Production,
    index: int | None,
    upstream: list[Recorded],
    attempt: int = 1,
) -> Job:
    assert index is not None
    encoded, rendered = upstream
    # The whole threshold set is in the recipe: a verdict is reused only while the
    # suite that reached it is unchanged, version and values alike.
    recipe = {
        "suite": "segment",
        "thresholds": production.thresholds.model_dump(mode="json"),
        "target": segment_target(order, index).model_dump(mode="json"),
        "nonfinite_share": rendered.metrics.get(NONFINITE_SHARE),
        "attempt": attempt,
        "source": encoded.asset.digest,
    }
    return Job(
        stage=GATE,
        index=index,
        title=f"{order.id} segment {index} gate",
        recipe=recipe,
        parameters={
            "suite": "segment",
            "suite_version": production.thresholds.version,
            "attempt": attempt,
            "source": encoded.asset.digest,
            "segment_index": index,
        },
        inputs=(Input(recorded=encoded, label="segment", title=f"segment {index}", role="parent"),),
    )


def compute_gate(job: Job, inputs: Mapping[str, bytes], device: DeviceTimer) -> Output:
    """The encoded segment's bytes, unchanged, with the segment suite's verdict on them.

    Gates running at the same time (a round's gates, ``flows.takes``) share one validation.
    """
    recipe = job.recipe
    verdict = judge_segment(
        Thresholds.model_validate(recipe["thresholds"]),
        inputs["segment"],
        SegmentTarget.model_validate(recipe["target"]),
        recipe["nonfinite_share"],
        int(recipe["attempt"]),
        device,
    )
    return Output(data=inputs["segment"], verdict=verdict)


GATE = StageSpec(
    name="gate",
    version="1",
    media_type=MEDIA_MP4,
    action="judged",
    plan=plan_gate,
    compute=compute_gate,
)
