"""QC metrics: what they measure on synthetic segments, and that black and frozen frames are
exactly the ones ffmpeg's blackdetect and freezedetect report with the same thresholds."""

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from factory.errors import BadInput, IntegrityError
from quality.metrics import (
    black_luma_threshold,
    deliverable_metrics,
    frame_stats,
    nonfinite_share,
    segment_metrics,
)
from quality.thresholds import BlackDetection, FrozenDetection, load_thresholds
from tests import quality_clips as clips

THRESHOLDS = load_thresholds()


def test_a_normal_segment_measures_its_size_rate_and_length():
    metrics = segment_metrics(clips.normal())
    assert (metrics.frames, metrics.width, metrics.height) == (48, clips.WIDTH, clips.HEIGHT)
    assert metrics.fps == 12
    assert metrics.duration_s == pytest.approx(4.0)
    assert metrics.black_frames == 0 and metrics.black_share == 0
    assert metrics.frozen_run_frames == 1
    assert metrics.frozen_run_s == pytest.approx(1 / 12)
    assert metrics.flicker_max < 5
    assert 16 <= metrics.luma_mean_min <= metrics.luma_mean <= metrics.luma_mean_max <= 235
    assert metrics.luma_range_min > 100
    assert metrics.bitrate_kbps > 0
    assert metrics.bits_per_pixel == pytest.approx(
        metrics.bitrate_kbps * 1000 / (clips.WIDTH * clips.HEIGHT * 12)
    )


def test_black_frames_are_counted():
    stats = frame_stats(clips.black(12, 30))
    assert np.flatnonzero(stats.black).tolist() == list(range(12, 30))
    metrics = segment_metrics(clips.black(12, 30))
    assert metrics.black_frames == 18
    assert metrics.black_share == pytest.approx(18 / 48)
    assert metrics.luma_mean_min == pytest.approx(16, abs=0.5)
    assert metrics.luma_range_min <= 2


def test_a_frozen_stretch_is_the_longest_run():
    metrics = segment_metrics(clips.frozen(10, 40))
    # x264 keeps refining a still picture, so 30 identical input frames decode as runs
    # that drift apart by more than the noise: what freezedetect sees too (see below).
    assert 12 <= metrics.frozen_run_frames <= 30
    assert metrics.frozen_run_s == pytest.approx(metrics.frozen_run_frames / 12)
    assert metrics.black_frames == 0


def test_flicker_is_the_largest_jump_of_mean_luma():
    metrics = segment_metrics(clips.flicker(80))
    assert metrics.flicker_max > 50
    assert metrics.flicker_p95 > 50
    assert segment_metrics(clips.normal()).flicker_max < 5


def test_nonfinite_share_of_the_renderers_float_output():
    frames = np.zeros((4, 8, 8, 3), np.float32)
    assert nonfinite_share(frames) == 0.0
    frames[0, 0, 0, 0] = np.nan
    frames[1, :, :, :] = np.inf
    frames[2, 0, 0, 1] = -np.inf
    assert nonfinite_share(frames) == pytest.approx((1 + 192 + 1) / frames.size)
    assert nonfinite_share(np.zeros((2, 2), np.uint8)) == 0.0
    with pytest.raises(BadInput, match="at least one value"):
        nonfinite_share(np.zeros((0, 8, 8, 3), np.float32))


def test_a_deliverable_counts_its_segments_and_where_they_start():
    metrics = deliverable_metrics(clips.joined(24, 36, 12))
    assert metrics.segment_starts == (0, 24, 60)
    assert metrics.segment_count == 3
    assert metrics.frames == 72
    assert metrics.duration_s == pytest.approx(6.0)
    assert (metrics.width, metrics.height, metrics.fps) == (clips.WIDTH, clips.HEIGHT, 12)


@pytest.mark.parametrize("data", [b"", b"not a video at all" * 10])
def test_unreadable_bytes_are_integrity_errors(data):
    with pytest.raises(IntegrityError):
        segment_metrics(data)
    with pytest.raises(IntegrityError):
        deliverable_metrics(data)


def test_the_pixel_threshold_maps_as_blackdetect_maps_it():
    # blackdetect: 16 + pix_th × (235 − 16) for limited range, pix_th × 255 for full range,
    # truncated to an integer.
    assert (
        black_luma_threshold(BlackDetection(pixel_threshold=0.10, picture_ratio=0.98), False) == 37
    )
    assert (
        black_luma_threshold(BlackDetection(pixel_threshold=0.10, picture_ratio=0.98), True) == 25
    )
    assert (
        black_luma_threshold(BlackDetection(pixel_threshold=0.0, picture_ratio=0.98), False) == 16
    )


# --- agreement with ffmpeg --------------------------------------------------------------


def _frame(seconds: str) -> int:
    return round(float(seconds) * clips.FPS)


def _ffmpeg_intervals(
    tmp_path: Path, data: bytes, black: BlackDetection, frozen: FrozenDetection
) -> tuple[list[tuple[int, int]], list[tuple[int, int | None]]]:
    """(first frame, end frame) of every black and every frozen interval ffmpeg reports;
    end is None for a freeze still running at the end (freezedetect never closes it)."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    # d=0 reports every black run; freezedetect reports a run of k frames when k/fps ≥ d,
    # so d of 1.5 frames reports every run of two frames or more.
    filters = (
        f"blackdetect=d=0:pix_th={black.pixel_threshold}:pic_th={black.picture_ratio},"
        f"freezedetect=n={frozen.noise}:d={1.5 / clips.FPS}"
    )
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path)]
    result = subprocess.run(
        [*command, "-vf", filters, "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    log = result.stderr
    blacks = [
        (_frame(start), _frame(end))
        for start, end in re.findall(r"black_start:([\d.]+) black_end:([\d.]+)", log)
    ]
    starts = [_frame(value) for value in re.findall(r"freeze_start: ([\d.]+)", log)]
    ends = [_frame(value) for value in re.findall(r"freeze_end: ([\d.]+)", log)]
    freezes = [(start, ends[i] if i < len(ends) else None) for i, start in enumerate(starts)]
    return blacks, freezes


def _our_intervals(data: bytes, black: BlackDetection, frozen: FrozenDetection):
    stats = frame_stats(data, black, frozen)
    count = len(stats.black)
    flags = np.concatenate([[False], stats.black, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(flags)).tolist()
    # At the end of the stream blackdetect closes a run at the last frame's start.
    blacks = [
        (start, min(stop, count - 1)) for start, stop in zip(edges[::2], edges[1::2], strict=True)
    ]
    # A run closed by a changed frame lasts k/fps, and freezedetect reports it when that
    # reaches d; a run still frozen at the end is reported only once its last frame is d
    # past its first, (k-1)/fps ≥ d, since no changed frame ever closes it.
    freezes = [
        (start, start + length) if start + length < count else (start, None)
        for start, length in stats.frozen_runs
        if start + length < count or length - 1 >= 1.5
    ]
    return blacks, freezes


AGREEMENT_CASES = {
    "normal": clips.normal,
    "black": lambda: clips.black(12, 30),
    "black to the end": lambda: clips.black(30, 48),
    "frozen": lambda: clips.frozen(10, 40),
    "flicker": lambda: clips.flicker(80),
    "grey levels around the threshold": lambda: clips.grey_levels(list(range(10, 34))),
    "rows darkening": clips.darkening_rows,
}


@pytest.mark.parametrize("case", AGREEMENT_CASES)
@pytest.mark.parametrize(
    ("black", "frozen"),
    [
        (THRESHOLDS.black, THRESHOLDS.frozen),
        (BlackDetection(pixel_threshold=0.05, picture_ratio=0.5), FrozenDetection(noise=0.01)),
    ],
    ids=["shipped thresholds", "other thresholds"],
)
def test_black_and_frozen_agree_with_ffmpeg(tmp_path, case, black, frozen):
    data = AGREEMENT_CASES[case]()
    theirs = _ffmpeg_intervals(tmp_path, data, black, frozen)
    ours = _our_intervals(data, black, frozen)
    assert ours[0] == theirs[0], "black intervals differ"
    assert ours[1] == theirs[1], "frozen intervals differ"
    if case in ("black", "black to the end", "rows darkening"):
        assert ours[0], "the clip was made to have black frames"
    if case == "frozen":
        assert ours[1], "the clip was made to freeze"
