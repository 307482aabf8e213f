"""QC metrics measured on delivered media: the decoded frames of an encoded MP4.

A segment is judged on what is delivered, not on an intermediate: its frames are decoded
(PyAV) to yuv420p planes and measured with numpy, one reduction over each frame's samples,
so no Python loop ever runs per pixel. Black and frozen frames are detected as ffmpeg's
``blackdetect`` and ``freezedetect`` filters detect them, with their thresholds
(``quality/thresholds.toml`` maps them), so the two agree frame for frame.

A deliverable is measured by demuxing alone: its duration and size, and where its
segments start. Each segment is a fresh x264 encode and x264 writes its version SEI into
the first frame of every encode; joining by stream copy keeps it, so the SEIs count the
segments and say at which frame each one starts.
"""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from factory.errors import BadInput, IntegrityError
from quality.thresholds import BlackDetection, FrozenDetection, load_thresholds

# x264's user-data SEI opens with this text ("x264 - core 165 r3222 …"); it is written once
# per encoder, into its first frame.
_X264_SEI = b"x264 - core"
# Rows of uint8 samples whose column sums cannot overflow uint16: 257 × 255 = 65535.
_ROWS_PER_UINT16_SUM = 257
# Rows compared at a time when deciding whether a frame is frozen (see _within_noise).
_DIFFERENCE_ROWS = 32

# A frame's Y, U and V planes (yuv420p), each (rows, columns) uint8.
Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


class SegmentMetrics(BaseModel):
    """What one encoded segment measures. Luma values are Y code values (0–255)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: int = Field(description="Decoded frames")
    duration_s: float = Field(description="From the first frame's start to the last one's end")
    width: int
    height: int
    fps: float = Field(description="The stream's average frame rate")
    luma_mean_min: float = Field(description="Mean luma of the darkest frame")
    luma_mean_max: float = Field(description="Mean luma of the brightest frame")
    luma_mean: float = Field(description="Mean luma over all frames")
    luma_min: int = Field(description="Darkest sample of any frame")
    luma_max: int = Field(description="Brightest sample of any frame")
    luma_range_min: int = Field(description="Smallest max − min luma of any frame (flattest)")
    black_frames: int = Field(description="Frames blackdetect would call black")
    black_share: float = Field(description="black_frames ÷ frames")
    frozen_run_frames: int = Field(description="Longest run of frames freezedetect calls frozen")
    frozen_run_s: float = Field(description="That run's length in seconds (freeze_duration)")
    flicker_max: float = Field(description="Largest frame-to-frame jump of mean luma")
    flicker_p95: float = Field(description="95th percentile of the frame-to-frame jumps")
    bitrate_kbps: float = Field(description="Coded video bits per second ÷ 1000")
    bits_per_pixel: float = Field(description="Coded bits per pixel per frame")


class DeliverableMetrics(BaseModel):
    """What a deliverable measures without decoding: duration, size and segment starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: int
    duration_s: float
    width: int
    height: int
    fps: float
    segment_starts: tuple[int, ...] = Field(
        description="Frame index where each x264 encode (each segment) starts, in order"
    )

    @property
    def segment_count(self) -> int:
        return len(self.segment_starts)


@dataclass(frozen=True)
class FrameStats:
    """Per-frame measurements of one stream, before they are summarised."""

    width: int
    height: int
    fps: Fraction
    duration_s: float
    coded_bytes: int
    luma_mean: np.ndarray
    luma_min: np.ndarray
    luma_max: np.ndarray
    black: np.ndarray
    frozen_runs: tuple[tuple[int, int], ...]
    """(first frame, length) of each run of two or more frames within the noise of its first."""


def black_luma_threshold(detection: BlackDetection, full_range: bool) -> int:
    """The highest 8-bit luma code value blackdetect counts as a black pixel.

    FFmpeg converts the double threshold to an unsigned integer, truncating, and so does this.
    """
    if full_range:
        return int(detection.pixel_threshold * 255)
    return int(16 + detection.pixel_threshold * (235 - 16))


def frame_stats(
    data: bytes,
    black: BlackDetection | None = None,
    frozen: FrozenDetection | None = None,
) -> FrameStats:
    """Decode ``data`` and measure every frame; thresholds default to the shipped ones."""
    thresholds = load_thresholds()
    black = black or thresholds.black
    frozen = frozen or thresholds.frozen
    means: list[float] = []
    minima: list[int] = []
    maxima: list[int] = []
    black_flags: list[bool] = []
    runs = _FreezeTracker(frozen.noise)
    with _open(data) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        # Without this FFmpeg conceals damaged slices and we would measure invented frames.
        stream.codec_context.options = {"err_detect": "explode"}
        timing = _Timing()
        luma_threshold: int | None = None
        for frame in _decode(container, stream, timing):
            planes = _yuv420_planes(frame)
            luma = planes[0]
            if luma_threshold is None:
                full = frame.color_range == 2 or frame.format.name.startswith("yuvj")
                luma_threshold = black_luma_threshold(black, full)
            samples = luma.size
            luma_sum = _plane_sum(luma)
            means.append(luma_sum / samples)
            minima.append(int(luma.min()))
            maxima.append(int(luma.max()))
            dark = np.count_nonzero(luma <= luma_threshold)
            black_flags.append(dark / samples >= black.picture_ratio)
            runs.add(planes, luma_sum)
        context = stream.codec_context
        fps = stream.average_rate or stream.guessed_rate
        if not means or fps is None:
            raise IntegrityError("video stream holds no decodable frames")
        return FrameStats(
            width=context.width,
            height=context.height,
            fps=Fraction(fps),
            duration_s=timing.duration_s(stream.time_base),
            coded_bytes=timing.coded_bytes,
            luma_mean=np.asarray(means),
            luma_min=np.asarray(minima, dtype=np.uint8),
            luma_max=np.asarray(maxima, dtype=np.uint8),
            black=np.asarray(black_flags, dtype=bool),
            frozen_runs=runs.finish(),
        )


def segment_metrics(
    data: bytes,
    black: BlackDetection | None = None,
    frozen: FrozenDetection | None = None,
) -> SegmentMetrics:
    """Measure an encoded segment (any MP4 with a video stream)."""
    stats = frame_stats(data, black, frozen)
    count = len(stats.luma_mean)
    jumps = np.abs(np.diff(stats.luma_mean))
    longest = max((length for _, length in stats.frozen_runs), default=1)
    fps = float(stats.fps)
    bitrate = stats.coded_bytes * 8 / stats.duration_s if stats.duration_s > 0 else 0.0
    return SegmentMetrics(
        frames=count,
        duration_s=stats.duration_s,
        width=stats.width,
        height=stats.height,
        fps=fps,
        luma_mean_min=float(stats.luma_mean.min()),
        luma_mean_max=float(stats.luma_mean.max()),
        luma_mean=float(stats.luma_mean.mean()),
        luma_min=int(stats.luma_min.min()),
        luma_max=int(stats.luma_max.max()),
        luma_range_min=int((stats.luma_max.astype(np.int16) - stats.luma_min).min()),
        black_frames=int(stats.black.sum()),
        black_share=float(stats.black.mean()),
        frozen_run_frames=longest,
        frozen_run_s=longest / fps,
        flicker_max=float(jumps.max()) if jumps.size else 0.0,
        flicker_p95=float(np.percentile(jumps, 95)) if jumps.size else 0.0,
        bitrate_kbps=bitrate / 1000,
        bits_per_pixel=bitrate / (stats.width * stats.height * fps),
    )


def deliverable_metrics(data: bytes) -> DeliverableMetrics:
    """Measure a deliverable by demuxing it: frames, duration, size, segment starts."""
    with _open(data) as container:
        stream = container.streams.video[0]
        timing = _Timing()
        starts = []
        for index, packet in enumerate(_packets(container, stream, timing)):
            if _X264_SEI in bytes(packet):
                starts.append(index)
        fps = stream.average_rate or stream.guessed_rate
        if not timing.packets or fps is None:
            raise IntegrityError("video stream holds no packets")
        return DeliverableMetrics(
            frames=timing.packets,
            duration_s=timing.duration_s(stream.time_base),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(fps),
            segment_starts=tuple(starts),
        )


def nonfinite_share(frames: np.ndarray) -> float:
    """Share of values in the renderer's float output that are NaN or ±inf (0.0 to 1.0)."""
    array = np.asarray(frames)
    if array.size == 0:
        raise BadInput("nonfinite_share needs at least one value; the render produced none")
    if not np.issubdtype(array.dtype, np.inexact):
        return 0.0  # integers cannot hold NaN or inf
    return float(np.count_nonzero(~np.isfinite(array)) / array.size)


class _FreezeTracker:
    """freezedetect's rule: a frame is frozen when it is within ``noise`` of the run's first
    frame (the reference), and the reference moves only to a frame that is not frozen."""

    def __init__(self, noise: float) -> None:
        self.noise = noise
        self.reference: Planes | None = None
        self.reference_luma_sum = 0
        self.start = 0
        self.index = 0
        self.runs: list[tuple[int, int]] = []

    def add(self, planes: Planes, luma_sum: int) -> None:
        """The next frame's planes and the sum of its luma samples."""
        if self.reference is not None and self._within_noise(planes, luma_sum):
            self.index += 1
            return
        self._close()
        # Views of the decoder's buffers: holding them keeps the reference frame alive.
        self.reference = planes
        self.reference_luma_sum = luma_sum
        self.start = self.index
        self.index += 1

    def finish(self) -> tuple[tuple[int, int], ...]:
        self._close()
        return tuple(self.runs)

    def _within_noise(self, planes: Planes, luma_sum: int) -> bool:
        assert self.reference is not None
        samples = sum(plane.size for plane in planes)
        limit = self.noise * 256 * samples
        # The summed absolute difference over every plane is at least the one over luma,
        # which is at least the difference of the luma sums: frames whose luma sums differ
        # by more than the limit are not frozen, with no sample-by-sample comparison and
        # no pass over the chroma. The +1 absorbs rounding.
        if abs(luma_sum - self.reference_luma_sum) > limit + 1:
            return False
        total = 0
        for plane, reference in zip(planes, self.reference, strict=True):
            for row in range(0, plane.shape[0], _DIFFERENCE_ROWS):
                rows = slice(row, row + _DIFFERENCE_ROWS)
                # |a - b| without widening: max - min of two uint8 arrays cannot overflow.
                difference = np.maximum(plane[rows], reference[rows])
                difference -= np.minimum(plane[rows], reference[rows])
                total += _plane_sum(difference)
                # Frames of noise have near-equal means but differ everywhere: a few rows
                # already exceed the limit, and the rest could only add to it.
                if total > limit + 1:
                    return False
        # freezedetect's own arithmetic, so a frame on the boundary is decided alike.
        return float(total) / samples / 256 <= self.noise

    def _close(self) -> None:
        length = self.index - self.start
        if self.reference is not None and length >= 2:
            self.runs.append((self.start, length))


class _Timing:
    """Packet count, coded bytes and the presentation span, gathered while demuxing."""

    def __init__(self) -> None:
        self.packets = 0
        self.coded_bytes = 0
        self.start: int | None = None
        self.end: int | None = None

    def add(self, packet: av.Packet) -> None:
        self.packets += 1
        self.coded_bytes += packet.size
        if packet.pts is not None:
            end = packet.pts + (packet.duration or 0)
            self.start = packet.pts if self.start is None else min(self.start, packet.pts)
            self.end = end if self.end is None else max(self.end, end)

    def duration_s(self, time_base: Fraction | None) -> float:
        if self.start is None or self.end is None or time_base is None:
            return 0.0
        return float((self.end - self.start) * time_base)


def _yuv420_planes(frame: av.VideoFrame) -> Planes:
    # Y, U and V as views of the decoded frame's own buffers: no copy per frame. The
    # chroma stays in because freezedetect compares every plane.
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        frame = frame.reformat(format="yuv420p")
    return tuple(_plane_view(plane) for plane in frame.planes)


def _plane_view(plane: av.video.plane.VideoPlane) -> np.ndarray:
    # Rows are line_size bytes apart (padded for SIMD); the picture is the first width.
    rows = np.frombuffer(plane, np.uint8)[: plane.line_size * plane.height]
    return rows.reshape(plane.height, plane.line_size)[:, : plane.width]


def _plane_sum(plane: np.ndarray) -> int:
    """The sum of a uint8 plane's samples, exactly.

    Summing down the columns in uint16 is exact for up to 257 rows (257 × 255 = 65535) and
    runs as wide vector adds, about three times faster than numpy's widening sum to uint64.
    """
    return sum(
        int(np.add.reduce(plane[row : row + _ROWS_PER_UINT16_SUM], axis=0, dtype=np.uint16).sum())
        for row in range(0, plane.shape[0], _ROWS_PER_UINT16_SUM)
    )


def _packets(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, timing: _Timing
) -> Iterator[av.Packet]:
    try:
        for packet in container.demux(stream):
            if packet.size:  # the demuxer ends with an empty flush packet
                timing.add(packet)
                yield packet
    except av.FFmpegError as error:
        raise IntegrityError(f"video stream cannot be demuxed: {error}") from None


def _decode(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, timing: _Timing
) -> Iterator[av.VideoFrame]:
    try:
        for packet in _packets(container, stream, timing):
            yield from packet.decode()
        yield from stream.decode(None)
    except av.FFmpegError as error:
        raise IntegrityError(f"video stream cannot be decoded: {error}") from None


@contextmanager
def _open(data: bytes) -> Iterator[av.container.InputContainer]:
    """An MP4 (or any container PyAV reads) with at least one video stream."""
    try:
        container = av.open(io.BytesIO(data), "r")
    except av.FFmpegError as error:
        raise IntegrityError(f"not a readable video container: {error}") from None
    try:
        if not container.streams.video:
            raise IntegrityError("the container has no video stream")
        yield container
    finally:
        container.close()
