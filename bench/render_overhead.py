"""Our render stage vs a bare diffusers pipeline call producing the same frames.

    .venv/bin/python bench/render_overhead.py [--rounds 5]

The stage adds the lossless intermediate encode, its C2PA manifest, hashing, the
store write and the signed lineage record to the bare call; goal: ≤ 1.05× the
bare call. Rounds alternate the two so drift
on a shared machine hits both alike.
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.common import emit, median, timed
from factory.orders import Order, Segment
from factory.registry import load_registry
from factory.settings import Settings
from media.devices import device_class
from media.pipelines import frames_for, get_pipeline
from media.video import decode_frames
from media.weights import resolve_model
from storage.assets import get_asset
from tasks.prepare import Production
from tasks.provenance import RunContext
from tasks.render import RENDER
from tasks.resources import open_resources
from tasks.runner import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-render-"))
    os.environ["FACTORY_HOME"] = str(work)
    context = RunContext(order_id="bench", flow_run_id="bench-render")
    model = resolve_model(load_registry().get("tiny"), work / "models")
    entry = model.entry
    segment = Segment(prompt="a lighthouse at dusk", seed=1, duration_s=5, fps=12)
    job = RENDER.plan(
        Order(id="bench", segments=[segment]),
        Production(models={"tiny": model}, background=None, logo=None),
        0,
        [],
    )
    settings = Settings()
    handle = get_pipeline(model.path, entry.pipeline_class)
    device = handle.pipe.device

    def bare() -> np.ndarray:
        with torch.inference_mode():
            video = handle.pipe(
                prompt=segment.prompt,
                negative_prompt=segment.negative_prompt,
                num_frames=frames_for(entry.pipeline_class, segment.frame_count),
                width=entry.render_width,
                height=entry.render_height,
                num_inference_steps=entry.default_steps,
                guidance_scale=segment.guidance,
                generator=torch.Generator(device=device).manual_seed(segment.seed),
                output_type="pt",
            ).frames[0][: segment.frame_count]
        return (video.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()

    bare()  # warm-up: first calls allocate
    bare_times, stage_times = [], []
    for round_index in range(args.rounds):
        resources = open_resources(settings, device_class(), str(work / f"store-{round_index}"))
        seconds, frames = timed(bare)
        bare_times.append(seconds)
        seconds, result = timed(
            lambda resources=resources: run_stage(resources, job, context, "use")
        )
        stage_times.append(seconds)
    stored = decode_frames(get_asset(resources.store, result.asset))
    emit(
        "render_overhead",
        {
            "frames": segment.frame_count,
            "size": f"{entry.render_width}x{entry.render_height}",
            "steps": entry.default_steps,
            "same_frames": bool(np.array_equal(stored, frames)),
            "bare_s_median": round(median(bare_times), 4),
            "stage_s_median": round(median(stage_times), 4),
            "ratio": round(median(stage_times) / median(bare_times), 4),
            "goal": "<= 1.05",
            "rounds": args.rounds,
        },
    )


if __name__ == "__main__":
    main()
