"""The rows the suites validate: measured metrics beside the targets they are held to.

One row per segment (or one for the deliverable). Targets travel in the row, as
``target_*`` columns, so one suite judges segments of different lengths in one
validation: equality with the target is a column-pair expectation, closeness a derived
``*_error`` column. The rows are plain dicts of JSON values; they are also what a
verdict reports as its metrics.
"""

from collections.abc import Sequence

from pydantic import JsonValue

from quality.metrics import DeliverableMetrics, SegmentMetrics
from quality.targets import DeliverableTarget, SegmentTarget

Row = dict[str, JsonValue]


def segment_row(
    index: int,
    metrics: SegmentMetrics,
    target: SegmentTarget,
    nonfinite_share: float | None = None,
) -> Row:
    """Segment ``index``'s metrics, its target and the derived columns the suite reads."""
    return {
        "segment": index,
        **metrics.model_dump(),
        "target_width": target.width,
        "target_height": target.height,
        "target_fps": target.fps,
        "target_frames": target.frames,
        "target_duration_s": target.duration_s,
        "duration_error_s": abs(metrics.duration_s - target.duration_s),
        # None when the renderer's float output was not checked: GX skips missing values.
        "nonfinite_share": nonfinite_share,
    }


def segment_rows(
    metrics: Sequence[SegmentMetrics],
    targets: Sequence[SegmentTarget],
    nonfinite_shares: Sequence[float | None] | None = None,
) -> list[Row]:
    shares = nonfinite_shares if nonfinite_shares is not None else [None] * len(metrics)
    if not len(metrics) == len(targets) == len(shares):
        raise ValueError("one target and one non-finite share (or None) per segment")
    return [
        segment_row(index, measured, target, share)
        for index, (measured, target, share) in enumerate(
            zip(metrics, targets, shares, strict=True)
        )
    ]


def deliverable_row(metrics: DeliverableMetrics, target: DeliverableTarget) -> Row:
    """The deliverable's metrics against its order: length, size, and where segments start."""
    found, expected = set(metrics.segment_starts), set(target.segment_starts)
    return {
        "deliverable": 0,
        **metrics.model_dump(mode="json"),
        "segment_count": metrics.segment_count,
        "target_width": target.width,
        "target_height": target.height,
        "target_fps": target.fps,
        "target_frames": target.frames,
        "target_duration_s": target.duration_s,
        "target_segment_count": len(target.segment_starts),
        "target_segment_starts": list(target.segment_starts),
        "duration_error_s": abs(metrics.duration_s - target.duration_s),
        # A start where the order has none, or none where it has one: a segment missing,
        # extra, or of the wrong length.
        "misplaced_segment_starts": len(found ^ expected),
    }
