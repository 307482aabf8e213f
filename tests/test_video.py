import hashlib
import io
import itertools
import os
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from factory.errors import BadInput, IntegrityError
from media.video import (
    KEYFRAME_INTERVAL_S,
    concat_mp4,
    decode_frames,
    decode_yuv420,
    encode_h264,
    encode_h264_yuv420,
    encode_lossless,
    encode_lossless_yuv420,
    probe,
    rgb_to_yuv420,
)

FPS = 12
REPO = Path(__file__).resolve().parent.parent


def panning(count: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth texture panning sideways: x264 uses P- and B-frames on it, as on real video."""
    rng = np.random.default_rng(seed)
    tiles = rng.integers(0, 256, (height // 8 + 1, (width + 2 * count) // 8 + 2, 3))
    texture = np.repeat(np.repeat(tiles, 8, axis=0), 8, axis=1).astype(np.float32)
    texture = (texture + np.roll(texture, 4, axis=0) + np.roll(texture, 4, axis=1)) / 3
    return np.stack([texture[:height, 2 * t : 2 * t + width] for t in range(count)]).astype(
        np.uint8
    )


def h264(frames: np.ndarray, fps: int = FPS, crf: int = 23, fragmented: bool = False) -> bytes:
    return encode_h264(frames, fps, crf=crf, preset="veryfast", fragmented=fragmented)


def top_level_boxes(data: bytes) -> list[str]:
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        offset += size if size else len(data)
    return boxes


def packets(data: bytes) -> list[tuple[int, int, int, bool]]:
    """(pts, dts, duration, keyframe) in decode order, in stream time-base units."""
    with av.open(io.BytesIO(data)) as container:
        return [
            (p.pts, p.dts, p.duration, p.is_keyframe) for p in container.demux(video=0) if p.size
        ]


def decoded_pts(data: bytes) -> list[int]:
    with av.open(io.BytesIO(data)) as container:
        return [frame.pts for frame in container.decode(video=0)]


@pytest.mark.parametrize("shape", [(5, 16, 16), (4, 17, 31), (3, 90, 160)])
def test_lossless_roundtrip_is_bit_exact(shape: tuple[int, int, int]) -> None:
    frames = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    data = encode_lossless(frames, FPS)
    assert np.array_equal(decode_frames(data), frames)
    count, height, width = shape
    info = probe(data)
    assert (info.codec, info.frames, info.width, info.height) == ("h264", count, width, height)
    assert info.duration_s == pytest.approx(count / FPS)


def test_yuv420_intermediate_roundtrip_is_bit_exact() -> None:
    planes = rgb_to_yuv420(panning(6, height=36, width=50))
    assert planes.shape == (6, 54, 50)
    data = encode_lossless_yuv420(planes, FPS)
    assert np.array_equal(decode_yuv420(data), planes)
    info = probe(data)
    assert (info.pix_fmt, info.width, info.height, info.frames) == ("yuv420p", 50, 36, 6)
    assert encode_lossless_yuv420(planes.copy(), FPS) == data


def test_h264_from_yuv420_planes_is_the_same_stream_as_from_rgb() -> None:
    # Composites are kept as yuv420p planes; the deliverable must not change for it.
    frames = panning(14, height=48, width=64)
    for fragmented in (False, True):
        planes = rgb_to_yuv420(frames)
        assert encode_h264_yuv420(
            planes, FPS, crf=23, preset="veryfast", fragmented=fragmented
        ) == h264(frames, fragmented=fragmented)


def test_yuv420_refuses_rgb_streams_and_bad_planes() -> None:
    with pytest.raises(IntegrityError, match="expected yuv420p"):
        decode_yuv420(encode_lossless(panning(2), FPS))
    with pytest.raises(BadInput, match="even width and height"):
        rgb_to_yuv420(np.zeros((2, 17, 32, 3), np.uint8))
    with pytest.raises(BadInput, match="shape"):
        encode_lossless_yuv420(np.zeros((2, 16, 16, 3), np.uint8), FPS)
    with pytest.raises(BadInput, match="uint8"):
        encode_h264_yuv420(
            np.zeros((2, 24, 16), np.float32), FPS, crf=23, preset="veryfast", fragmented=False
        )


def test_lossless_is_deterministic() -> None:
    frames = panning(10)
    assert encode_lossless(frames, FPS) == encode_lossless(frames.copy(), FPS)


@pytest.mark.parametrize("data", [b"", b"not a video" * 100], ids=["empty", "garbage"])
def test_unreadable_bytes_raise_integrity_error(data: bytes) -> None:
    with pytest.raises(IntegrityError, match="not a readable video"):
        decode_frames(data)
    with pytest.raises(IntegrityError):
        probe(data)


@pytest.mark.parametrize("fragmented", [False, True], ids=["flat", "fragmented"])
def test_truncated_video_raises_integrity_error(fragmented: bool) -> None:
    data = h264(panning(30), fragmented=fragmented)
    # Inside the first fragment; a cut between fragments would leave a shorter valid file.
    cut = data.index(b"mdat") + 200
    with pytest.raises(IntegrityError):
        decode_frames(data[:cut])


@pytest.mark.parametrize(
    "encode", [h264, lambda f: encode_lossless(f, FPS)], ids=["h264", "lossless"]
)
def test_damaged_bitstream_raises_integrity_error(encode) -> None:
    data = encode(panning(30))
    with av.open(io.BytesIO(data)) as container:
        first = bytes(next(container.demux(video=0)))
    # The IDR slice is the last NAL unit of the first sample, after SPS, PPS and SEI.
    start = data.index(first) + len(first) * 3 // 4
    damaged = data[:start] + bytes(b ^ 0x5A for b in data[start : start + 32]) + data[start + 32 :]
    with pytest.raises(IntegrityError, match="cannot be decoded"):
        decode_frames(damaged)


@pytest.mark.parametrize("fragmented", [False, True], ids=["flat", "fragmented"])
@pytest.mark.parametrize("count", [1, 7, 30])
def test_h264_has_exact_frames_and_duration(count: int, fragmented: bool) -> None:
    frames = panning(count)
    data = h264(frames, fragmented=fragmented)
    info = probe(data)
    assert info.codec == "h264"
    assert info.profile == "High"
    assert info.pix_fmt == "yuv420p"
    assert (info.width, info.height, info.fps) == (64, 48, Fraction(FPS))
    assert info.frames == count
    assert info.duration_s == pytest.approx(count / FPS)
    with av.open(io.BytesIO(data)) as container:
        assert container.duration / 1e6 == pytest.approx(count / FPS, abs=1e-6)
    pts = decoded_pts(data)
    step = packets(data)[0][2]
    # Fragmented files start at 0 too: the edit list hides the B-frame reordering delay.
    assert pts == [i * step for i in range(count)]
    assert len(decode_frames(data)) == count


def test_h264_keeps_colours() -> None:
    colours = np.random.default_rng(2).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    colours[0, :3] = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = np.repeat(np.repeat(colours, 16, axis=0), 16, axis=1)[None].repeat(3, axis=0)
    decoded = decode_frames(h264(frames, crf=10)).astype(int)
    # Patch interiors: a 601/709 matrix or full/limited range mix-up moves them by 10 to 40.
    interior = np.s_[:, 4::16, 4::16]
    assert np.abs(decoded[interior] - frames[interior]).max() <= 3


def test_h264_is_tagged_bt709_limited_range() -> None:
    with av.open(io.BytesIO(h264(panning(2)))) as container:
        context = container.streams.video[0].codec_context
        assert (context.colorspace, context.color_primaries, context.color_trc) == (1, 1, 1)
        assert context.color_range == 1


def nal_types(packet: bytes) -> list[int]:
    """NAL unit types of one MP4 H.264 sample (4-byte length prefixes)."""
    types, offset = [], 0
    while offset < len(packet):
        (length,) = struct.unpack(">I", packet[offset : offset + 4])
        types.append(packet[offset + 4] & 0x1F)
        offset += 4 + length
    return types


def test_h264_gops_start_with_an_idr_carrying_its_parameter_sets() -> None:
    data = h264(panning(30))
    with av.open(io.BytesIO(data)) as container:
        keyframes = [(p.pts, bytes(p)) for p in container.demux(video=0) if p.is_keyframe]
    step = packets(data)[0][2]
    assert [pts for pts, _ in keyframes] == [0, KEYFRAME_INTERVAL_S * FPS * step]
    for _, packet in keyframes:
        # 7 SPS, 8 PPS, 5 IDR slice: in-band headers keep joined segments decodable.
        assert {5, 7, 8} <= set(nal_types(packet))
    assert b"open_gop=0" in data


def test_fragmented_output_is_fragmented() -> None:
    frames = panning(30)
    fragmented = top_level_boxes(h264(frames, fragmented=True))
    flat = top_level_boxes(h264(frames, fragmented=False))
    assert fragmented[:2] == ["ftyp", "moov"]
    assert fragmented.count("moof") >= 2  # one fragment per keyframe
    assert "moof" not in flat
    assert "moov" in flat


def test_h264_rejects_odd_sizes_and_bad_arrays() -> None:
    with pytest.raises(BadInput, match="even width and height"):
        h264(np.zeros((2, 17, 32, 3), np.uint8))
    with pytest.raises(BadInput, match="uint8"):
        h264(np.zeros((2, 16, 16, 3), np.float32))
    with pytest.raises(BadInput, match="shape"):
        h264(np.zeros((0, 16, 16, 3), np.uint8))


def test_h264_is_deterministic_within_a_process() -> None:
    # Before x264 was kept off AVX-512 (see media.video), about one encode in five differed
    # here under CPU contention, so one repeat is not enough to notice.
    frames = panning(24)
    for fragmented in (False, True):
        outputs = {h264(frames.copy(), fragmented=fragmented) for _ in range(25)}
        assert len(outputs) == 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_h264_bytes_do_not_depend_on_the_process_or_its_cpu_count() -> None:
    # A child pinned to one CPU stands in for a smaller machine: FFmpeg sizes its automatic
    # thread pools from the CPUs a process may use.
    script = (
        "import hashlib, os, sys\n"
        "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
        "from tests.test_video import h264, panning\n"
        "for fragmented in (False, True):\n"
        "    data = h264(panning(24), fragmented=fragmented)\n"
        "    print(hashlib.sha256(data).hexdigest())\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    here = [hashlib.sha256(h264(panning(24), fragmented=f)).hexdigest() for f in (False, True)]
    assert child.stdout.split() == here


def segment_set(fragmented: bool) -> tuple[list[bytes], list[np.ndarray]]:
    frames = [panning(count, seed=seed) for seed, count in enumerate((7, 12, 5))]
    return [h264(f, fragmented=fragmented) for f in frames], frames


@pytest.mark.parametrize("fragmented_in", [False, True], ids=["flat-in", "fragmented-in"])
@pytest.mark.parametrize("fragmented_out", [False, True], ids=["flat-out", "fragmented-out"])
def test_concat_joins_by_stream_copy(fragmented_in: bool, fragmented_out: bool) -> None:
    segments, _ = segment_set(fragmented_in)
    joined = concat_mp4(segments, fragmented=fragmented_out)
    info = probe(joined)
    assert (info.codec, info.frames, info.fps) == ("h264", 24, Fraction(FPS))
    assert info.duration_s == pytest.approx(24 / FPS)
    with av.open(io.BytesIO(joined)) as container:
        assert container.duration / 1e6 == pytest.approx(24 / FPS, abs=1e-6)

    demuxed = packets(joined)
    step = demuxed[0][2]
    assert sorted(pts for pts, _, _, _ in demuxed) == [i * step for i in range(24)]
    dts = [d for _, d, _, _ in demuxed]
    assert all(a < b for a, b in itertools.pairwise(dts))
    assert [pts for pts, _, _, key in demuxed if key][:3] == [0, 7 * step, 19 * step]

    assert decoded_pts(joined) == [i * step for i in range(24)]
    # Stream copy: every frame decodes to exactly what its own segment decoded to.
    expected = np.concatenate([decode_frames(segment) for segment in segments])
    assert np.array_equal(decode_frames(joined), expected)
    assert ("moof" in top_level_boxes(joined)) is fragmented_out


def test_concat_is_deterministic() -> None:
    segments, _ = segment_set(False)
    for fragmented in (False, True):
        assert concat_mp4(segments, fragmented=fragmented) == concat_mp4(
            list(segments), fragmented=fragmented
        )


def test_concat_of_one_segment_keeps_its_frames() -> None:
    segment = h264(panning(9))
    assert np.array_equal(
        decode_frames(concat_mp4([segment], fragmented=False)), decode_frames(segment)
    )


@pytest.mark.parametrize(
    ("other", "what"),
    [
        (lambda: h264(panning(5, height=32)), "size"),
        (lambda: h264(panning(5), fps=24), "fps"),
        (lambda: h264(panning(5), crf=35), "parameter sets"),
        (lambda: encode_lossless(panning(5), FPS), "pix_fmt"),
    ],
    ids=["size", "fps", "crf", "lossless"],
)
def test_concat_refuses_mismatched_segments(other, what: str) -> None:
    with pytest.raises(BadInput, match=f"segment 1 cannot be joined.*{what}"):
        concat_mp4([h264(panning(5)), other()], fragmented=False)


def test_concat_reports_broken_segments() -> None:
    good = h264(panning(5))
    with pytest.raises(IntegrityError, match="segment 1"):
        concat_mp4([good, b"\x00" * 64], fragmented=False)
    with pytest.raises(BadInput, match="at least one"):
        concat_mp4([], fragmented=False)


def test_ffmpeg_decodes_the_deliverable_without_errors(tmp_path: Path) -> None:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    segments, _ = segment_set(False)
    for fragmented in (False, True):
        path = tmp_path / f"joined-{fragmented}.mp4"
        path.write_bytes(concat_mp4(segments, fragmented=fragmented))
        result = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "null", "-"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0
        assert result.stderr == ""
