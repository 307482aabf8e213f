"""H.264 in MP4: the lossless intermediates, the delivery encode, and joining segments.

Renders are kept as lossless RGB. Composites are kept losslessly in the
deliverable's own pixel format, yuv420p (planes laid out as FFmpeg does, one
``(3H/2, W)`` array per frame): the RGB→YUV conversion happens once, when the
composite is made, so the encode reads half the bytes and converts nothing, and
the delivered stream is the same as encoding the RGB composite directly.

Everything here is a pure function of bytes and arrays. Outputs are content-addressed and
cached, so every writer is byte-deterministic: the same frames and settings give the same
bytes in any process on any machine with the same FFmpeg and x264 builds.
"""

import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

from factory.errors import BadInput, IntegrityError

# x264's output depends on its thread count: the count is written into the stream's SEI,
# and from 8 threads on the lookahead is split differently. A count derived from the
# worker's cores would give different bytes on different machines, so it is fixed.
X264_THREADS = 4


def _x264_cpu_params() -> str:
    # In the Firecracker VMs these workers run in, x264's AVX-512 code gave different bytes
    # (and pictures) for identical input in up to a third of encodes whenever other processes
    # competed for the CPU, even with one x264 thread: the vector state does not survive
    # preemption there. Capped at AVX2 the same stress gave identical bytes 1800 times in
    # 1800. x264's assembly is bit-exact with its C code, so the cap changes no output byte;
    # it costs 0–6% speed.
    try:
        cpu_flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return ""
    return "asm=AVX2" if "avx512f" in cpu_flags else ""


X264_CPU_PARAMS = _x264_cpu_params()

# Every segment is a fresh encoder, so it starts with an IDR; inside a segment a closed GOP
# this long bounds seek distance and fragment length.
KEYFRAME_INTERVAL_S = 2

H264_PROFILE = "high"

# delay_moov lets the muxer write the edit list that hides B-frame reordering delay, so
# fragmented files start at pts 0 like flat ones instead of two frames late.
FRAGMENTED_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+delay_moov"


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` reads from an MP4's first video stream."""

    codec: str
    width: int
    height: int
    fps: Fraction
    frames: int
    duration_s: float
    pix_fmt: str
    profile: str | None


def encode_lossless(frames: np.ndarray, fps: int) -> bytes:
    """(T,H,W,3) uint8 RGB → MP4 that decodes back to exactly the same array.

    libx264rgb at qp 0 codes RGB without chroma subsampling, so any size works, odd too.
    """
    _check_frames(frames, fps)
    return _encode(
        (av.VideoFrame.from_ndarray(image, format="rgb24") for image in frames),
        frames.shape[2],
        frames.shape[1],
        fps,
        codec="libx264rgb",
        pix_fmt="rgb24",
        options={"qp": "0", "preset": "ultrafast", "x264-params": _x264_params()},
        container_options={},
        tag_bt709=False,
    )


def encode_lossless_yuv420(planes: np.ndarray, fps: int) -> bytes:
    """(T,3H/2,W) uint8 yuv420p planes (from ``rgb_to_yuv420``) → MP4 that decodes back to them.

    libx264 at qp 0 keeps every sample; the stream is tagged BT.709 limited range, as the
    planes are.
    """
    _check_planes(planes, fps)
    return _encode(
        _yuv_frames(planes),
        planes.shape[2],
        planes.shape[1] * 2 // 3,
        fps,
        codec="libx264",
        pix_fmt="yuv420p",
        options={"qp": "0", "preset": "ultrafast", "x264-params": _x264_params()},
        container_options={},
        tag_bt709=True,
    )


def encode_h264(frames: np.ndarray, fps: int, *, crf: int, preset: str, fragmented: bool) -> bytes:
    """(T,H,W,3) uint8 RGB → H.264 High yuv420p MP4 with exactly T frames lasting T/fps s.

    Segments encoded with the same crf, preset, size and fps can be joined by ``concat_mp4``.
    """
    _check_frames(frames, fps)
    _check_even(frames.shape[2], frames.shape[1])
    # Converted frame by frame as x264 asks for them, so the conversion overlaps x264's
    # own threads; the bytes are those of encode_h264_yuv420(rgb_to_yuv420(frames)).
    return _encode_h264(
        (_to_yuv420(image) for image in frames),
        frames.shape[2],
        frames.shape[1],
        fps,
        crf=crf,
        preset=preset,
        fragmented=fragmented,
    )


def encode_h264_yuv420(
    planes: np.ndarray, fps: int, *, crf: int, preset: str, fragmented: bool
) -> bytes:
    """``encode_h264`` for frames already converted by ``rgb_to_yuv420`` (same output bytes)."""
    _check_planes(planes, fps)
    return _encode_h264(
        _yuv_frames(planes),
        planes.shape[2],
        planes.shape[1] * 2 // 3,
        fps,
        crf=crf,
        preset=preset,
        fragmented=fragmented,
    )


def _encode_h264(
    frames: Iterable[av.VideoFrame],
    width: int,
    height: int,
    fps: int,
    *,
    crf: int,
    preset: str,
    fragmented: bool,
) -> bytes:
    options = {
        "crf": str(crf),
        "preset": preset,
        "profile": H264_PROFILE,
        "g": str(KEYFRAME_INTERVAL_S * fps),
        # In-band SPS/PPS at every IDR keep segments decodable after stream-copy joining.
        "x264-params": _x264_params("repeat-headers=1", "open-gop=0"),
    }
    container_options = {"movflags": FRAGMENTED_MOVFLAGS} if fragmented else {}
    return _encode(
        frames,
        width,
        height,
        fps,
        codec="libx264",
        pix_fmt="yuv420p",
        options=options,
        container_options=container_options,
        tag_bt709=True,
    )


def rgb_to_yuv420(frames: np.ndarray) -> np.ndarray:
    """(T,H,W,3) uint8 RGB → (T,3H/2,W) yuv420p planes, BT.709 limited range.

    This is the one conversion between the RGB the compositor draws and the YUV the
    deliverable carries; H and W must be even (the chroma planes are half size).
    """
    _check_frames(frames, 1)
    _check_even(frames.shape[2], frames.shape[1])
    return np.stack([_to_yuv420(image).to_ndarray() for image in frames])


def _to_yuv420(image: np.ndarray) -> av.VideoFrame:
    # One swscale thread: at this size FFmpeg's own pool only adds overhead, and x264's
    # threads or the stage's other work keep the cores busy.
    return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
        format="yuv420p",
        dst_colorspace=Colorspace.ITU709,
        dst_color_range=ColorRange.MPEG,
        threads=1,
    )


def decode_frames(data: bytes) -> np.ndarray:
    """Decode every frame of the first video stream to a (T,H,W,3) uint8 RGB array."""
    return np.stack(_decode(data, _rgb))


def decode_yuv420(data: bytes) -> np.ndarray:
    """Decode a yuv420p stream (a composite) to its (T,3H/2,W) planes, without conversion."""

    def planes(frame: av.VideoFrame) -> np.ndarray:
        if frame.format.name != "yuv420p":
            raise IntegrityError(f"video stream is {frame.format.name}, expected yuv420p planes")
        return frame.to_ndarray()

    return np.stack(_decode(data, planes))


def _decode(data: bytes, convert: Callable[[av.VideoFrame], np.ndarray]) -> list[np.ndarray]:
    with _open(data) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        # By default FFmpeg conceals damaged slices and returns plausible garbage frames.
        stream.codec_context.options = {"err_detect": "explode"}
        try:
            frames = [convert(frame) for frame in container.decode(stream)]
        except av.FFmpegError as error:
            raise IntegrityError(f"video stream cannot be decoded: {error}") from None
    if not frames:
        raise IntegrityError("video stream holds no decodable frames")
    return frames


def probe(data: bytes) -> VideoInfo:
    """Codec, size, rate, pixel format and profile; frames and duration by demuxing packets."""
    with _open(data) as container:
        stream = container.streams.video[0]
        packets = _demux(container, stream, "data")
        context = stream.codec_context
        fps = stream.average_rate or stream.guessed_rate
        if not packets or fps is None:
            raise IntegrityError("video stream holds no packets")
        start = min(packet.pts for packet in packets)
        end = max(packet.pts + packet.duration for packet in packets)
        return VideoInfo(
            codec=context.name,
            width=context.width,
            height=context.height,
            fps=Fraction(fps),
            frames=len(packets),
            duration_s=float((end - start) * stream.time_base),
            pix_fmt=context.pix_fmt,
            profile=context.profile,
        )


def concat_mp4(segments: list[bytes], *, fragmented: bool) -> bytes:
    """Join H.264 MP4 segments by stream copy into one MP4 with continuous timestamps.

    Raises ``IntegrityError`` for bytes that are not an MP4 with video, and ``BadInput`` when
    segments differ in codec, size, frame rate, pixel format, profile or encoder settings.
    """
    if not segments:
        raise BadInput("concat_mp4 needs at least one segment")
    buffer = io.BytesIO()
    container_options = {"movflags": FRAGMENTED_MOVFLAGS} if fragmented else {}
    with av.open(buffer, "w", format="mp4", options=container_options) as output:
        output_stream = None
        reference: dict[str, object] = {}
        time_base = Fraction(0)
        # Kept in the first segment's time base; each segment is shifted so that its earliest
        # pts lands where the previous one ended (adding only the previous end leaves gaps,
        # because a segment's first pts is not always 0).
        running_end = 0
        for index, data in enumerate(segments):
            with _open(data, f"segment {index}") as container:
                stream = container.streams.video[0]
                signature = _signature(stream)
                if output_stream is None:
                    output_stream = output.add_stream_from_template(stream)
                    reference = signature
                    time_base = stream.time_base
                else:
                    _check_same(reference, signature, index)
                packets = _demux(container, stream, f"segment {index}")
                if not packets:
                    raise IntegrityError(f"segment {index} holds no video packets")
                if not packets[0].is_keyframe:
                    raise BadInput(
                        f"segment {index} does not start with a keyframe, so it cannot be "
                        "joined without re-encoding; encode each segment as closed GOPs"
                    )
                scale = stream.time_base / time_base
                shift = running_end - _rescale(min(p.pts for p in packets), scale)
                for packet in packets:
                    pts = _rescale(packet.pts, scale) + shift
                    duration = _rescale(packet.duration, scale)
                    running_end = max(running_end, pts + duration)
                    packet.pts = pts
                    packet.dts = _rescale(packet.dts, scale) + shift
                    packet.duration = duration
                    packet.time_base = time_base
                    packet.stream = output_stream
                    output.mux(packet)
    return buffer.getvalue()


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    # Planar RGB (the lossless intermediate) comes out as (H,W,3) RGB without swscale,
    # 10× cheaper than converting it to rgb24.
    if frame.format.name == "gbrp":
        return frame.to_ndarray()
    return frame.to_ndarray(format="rgb24")


def _x264_params(*params: str) -> str:
    return ":".join(param for param in (*params, X264_CPU_PARAMS) if param)


def _check_frames(frames: np.ndarray, fps: int) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise BadInput(f"frames must be a uint8 numpy array, got {_describe(frames)}")
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.shape[0] == 0:
        raise BadInput(f"frames must have shape (T>0, H, W, 3), got {frames.shape}")
    if fps < 1:
        raise BadInput(f"fps must be at least 1, got {fps}")


def _check_planes(planes: np.ndarray, fps: int) -> None:
    if not isinstance(planes, np.ndarray) or planes.dtype != np.uint8:
        raise BadInput(f"yuv420p planes must be a uint8 numpy array, got {_describe(planes)}")
    if planes.ndim != 3 or planes.shape[0] == 0 or planes.shape[1] % 3:
        raise BadInput(f"yuv420p planes must have shape (T>0, 3H/2, W), got {planes.shape}")
    _check_even(planes.shape[2], planes.shape[1] * 2 // 3)
    if fps < 1:
        raise BadInput(f"fps must be at least 1, got {fps}")


def _check_even(width: int, height: int) -> None:
    if width % 2 or height % 2:
        raise BadInput(
            f"H.264 yuv420p needs even width and height, got {width}x{height}: "
            "the chroma planes are half size"
        )


def _describe(value: object) -> str:
    dtype = getattr(value, "dtype", None)
    return f"{type(value).__name__} of {dtype}" if dtype is not None else type(value).__name__


def _encode(
    frames: Iterable[av.VideoFrame],
    width: int,
    height: int,
    fps: int,
    *,
    codec: str,
    pix_fmt: str,
    options: dict[str, str],
    container_options: dict[str, str],
    tag_bt709: bool,
) -> bytes:
    time_base = Fraction(1, fps)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4", options=container_options) as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width = width
        stream.height = height
        stream.pix_fmt = pix_fmt
        context = stream.codec_context
        context.time_base = time_base
        # PyAV defaults to slice threads: larger files and slower than frame threads.
        context.thread_type = "AUTO"
        context.thread_count = X264_THREADS
        if tag_bt709:
            # Tag BT.709 limited range so players do not guess 601 for small frames and 709
            # for HD; rgb_to_yuv420 converts with the same matrix.
            context.colorspace = Colorspace.ITU709
            context.color_primaries = ColorPrimaries.BT709
            context.color_trc = ColorTrc.BT709
            context.color_range = ColorRange.MPEG
        for index, frame in enumerate(frames):
            frame.pts = index
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _yuv_frames(planes: np.ndarray) -> Iterator[av.VideoFrame]:
    return (av.VideoFrame.from_ndarray(plane, format="yuv420p") for plane in planes)


@contextmanager
def _open(data: bytes, what: str = "data") -> Iterator[av.container.InputContainer]:
    try:
        container = av.open(io.BytesIO(data), "r")
    except av.FFmpegError as error:
        raise IntegrityError(f"{what} is not a readable video container: {error}") from None
    try:
        if not container.streams.video:
            raise IntegrityError(f"{what} has no video stream")
        yield container
    finally:
        container.close()


def _demux(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, what: str
) -> list[av.Packet]:
    try:
        # The demuxer ends with an empty flush packet that carries no frame.
        return [packet for packet in container.demux(stream) if packet.size]
    except av.FFmpegError as error:
        raise IntegrityError(f"{what} cannot be demuxed: {error}") from None


def _signature(stream: av.video.stream.VideoStream) -> dict[str, object]:
    context = stream.codec_context
    return {
        "codec": context.name,
        "size": f"{context.width}x{context.height}",
        "fps": stream.average_rate,
        "pix_fmt": context.pix_fmt,
        "profile": context.profile,
        # SPS/PPS: differing ones (another crf or preset) decode corrupted after joining.
        "parameter sets": bytes(context.extradata or b""),
    }


def _check_same(reference: dict[str, object], signature: dict[str, object], index: int) -> None:
    for key, expected in reference.items():
        if signature[key] != expected:
            shown = "differ" if isinstance(expected, bytes) else f"{signature[key]} vs {expected}"
            raise BadInput(
                f"segment {index} cannot be joined to segment 0: {key} {shown}; every segment "
                "of one deliverable must share codec, size, fps, pixel format and encode settings"
            )


def _rescale(value: int, scale: Fraction) -> int:
    return value if scale == 1 else round(value * scale)
