"""Our H.264 encode (PyAV) vs the ffmpeg command-line encoder on the same raw frames.

    .venv/bin/python bench/encode_vs_ffmpeg.py [--segments 12] [--rounds 3]

Frames are the demo order's real composites (tiny-model renders at 640×360 with
caption and logo), one minute by default. ffmpeg reads raw RGB from a pipe, the
cheapest way to hand it frames that live in memory; both use libx264 with the
demo's crf and preset. Goal: ours ≤ 1.10× ffmpeg.
"""

import argparse
import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from bench.common import emit, median, timed
from factory.orders import load_order
from factory.registry import load_registry
from media.compositing import Compositor
from media.pipelines import get_pipeline, render_video
from media.video import encode_h264, probe
from media.weights import resolve_model

EXAMPLES = Path(__file__).parent.parent / "examples"


def demo_frames(segments: int) -> tuple[np.ndarray, int, int, str]:
    order = load_order(EXAMPLES / "demo.yaml")
    work = Path(tempfile.mkdtemp(prefix="bench-encode-"))
    model = resolve_model(load_registry().get("tiny"), work / "models")
    handle = get_pipeline(model.path, model.entry.pipeline_class)
    logo = Path(order.composite.logo).read_bytes()
    parts = []
    for index, segment in enumerate(order.segments[:segments]):
        frames = render_video(
            handle.pipe,
            prompt=segment.prompt,
            negative_prompt=segment.negative_prompt,
            seed=segment.seed,
            num_frames=segment.frame_count,
            width=model.entry.render_width,
            height=model.entry.render_height,
            steps=model.entry.default_steps,
            guidance=segment.guidance,
        ).frames
        compositor = Compositor(
            order.composite, segment.width, segment.height, order.caption_for(index), None, logo
        )
        parts.append(compositor.compose(frames))
    return np.concatenate(parts), order.segments[0].fps, order.encode.crf, order.encode.preset


def ffmpeg_encode(frames: np.ndarray, fps: int, crf: int, preset: str, out: Path) -> bytes:
    _, height, width, _ = frames.shape
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps),
        "-i", "-",
        "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
        str(out),
    ]  # fmt: skip
    subprocess.run(command, input=frames.tobytes(), check=True)
    return out.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--segments", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    frames, fps, crf, preset = demo_frames(args.segments)
    out = Path(tempfile.mkdtemp(prefix="bench-ffmpeg-")) / "out.mp4"
    ours_times, ffmpeg_times = [], []
    for _ in range(args.rounds):
        seconds, ours = timed(
            lambda: encode_h264(frames, fps, crf=crf, preset=preset, fragmented=False)
        )
        ours_times.append(seconds)
        seconds, theirs = timed(lambda: ffmpeg_encode(frames, fps, crf, preset, out))
        ffmpeg_times.append(seconds)
    emit(
        "encode_vs_ffmpeg",
        {
            "frames": int(frames.shape[0]),
            "size": f"{frames.shape[2]}x{frames.shape[1]}",
            "crf": crf,
            "preset": preset,
            "ours_s_median": round(median(ours_times), 4),
            "ffmpeg_cli_s_median": round(median(ffmpeg_times), 4),
            "ours_fps": round(frames.shape[0] / median(ours_times), 1),
            "ratio": round(median(ours_times) / median(ffmpeg_times), 4),
            "ours_bytes": len(ours),
            "ffmpeg_bytes": len(theirs),
            "ours_frames": probe(ours).frames,
            "goal": "<= 1.10",
            "rounds": args.rounds,
        },
    )


if __name__ == "__main__":
    main()
