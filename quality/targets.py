"""What an order asks of each segment and of the deliverable, as the suites compare it."""

from pydantic import BaseModel, ConfigDict, Field

from factory.errors import BadInput
from factory.orders import Order


class SegmentTarget(BaseModel):
    """The size, rate and length a segment must have."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    fps: float = Field(gt=0)
    frames: int = Field(gt=0)
    duration_s: float = Field(gt=0)


class DeliverableTarget(BaseModel):
    """The size, rate and length of the whole deliverable, and where its segments start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    fps: float = Field(gt=0)
    frames: int = Field(gt=0)
    duration_s: float = Field(gt=0)
    segment_starts: tuple[int, ...] = Field(min_length=1)


def segment_target(order: Order, index: int) -> SegmentTarget:
    """What segment ``index`` of ``order`` must deliver: its frame count at its fps."""
    if not 0 <= index < len(order.segments):
        raise BadInput(
            f"order {order.id} has segments 0 to {len(order.segments) - 1}; there is no "
            f"segment {index}"
        )
    segment = order.segments[index]
    return SegmentTarget(
        width=segment.width,
        height=segment.height,
        fps=segment.fps,
        frames=segment.frame_count,
        duration_s=segment.frame_count / segment.fps,
    )


def deliverable_target(order: Order) -> DeliverableTarget:
    """What ``order``'s deliverable must be: its segments back to back, in order."""
    first = order.segments[0]
    starts, frames = [], 0
    for segment in order.segments:
        starts.append(frames)
        frames += segment.frame_count
    return DeliverableTarget(
        width=first.width,
        height=first.height,
        fps=first.fps,
        frames=frames,
        duration_s=order.duration_s,
        segment_starts=tuple(starts),
    )
