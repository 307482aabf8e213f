"""Load diffusers pipelines from local directories and render frames with them.

One loading path serves the tiny model and real checkpoints alike: both are diffusers pipeline
directories (``model_index.json`` plus one folder per component), loaded without the hub.
"""

import dataclasses
import pathlib
import threading
from typing import NamedTuple

import diffusers
import huggingface_hub
import numpy as np
import torch

from factory.errors import BadInput, ModelNotFound

_REGISTER_HINT = (
    "add an entry to the model registry (factory models --help) pointing at a local diffusers "
    "pipeline directory"
)

# Frame counts a pipeline's VAE can decode are k * stride + 1; asking for any other count makes the
# pipeline round it on its own, so callers ask for a valid count and slice.
_FRAME_STRIDES = {"Wan": 4, "LTX": 8}


@dataclasses.dataclass(frozen=True)
class LoadedPipeline:
    """A cached pipeline and the lock to hold while calling it.

    A diffusers pipeline keeps per-call state on itself (the scheduler's timesteps and step
    index, the guidance scale, the current timestep), so two threads calling one object at once
    corrupt each other's renders. Threads share the weights through the cache and take turns
    through ``lock``.
    """

    pipe: diffusers.DiffusionPipeline
    lock: threading.Lock


_cache: dict[tuple[str, str, str], LoadedPipeline] = {}
_cache_lock = threading.Lock()


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype_for(device: str) -> torch.dtype:
    if torch.device(device).type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # Half precision on the CPU is slow or unsupported for many ops.
    return torch.float32


def load_pipeline(
    path: pathlib.Path | str,
    pipeline_class: str = "WanPipeline",
    device: str | None = None,
) -> diffusers.DiffusionPipeline:
    """Load a diffusers pipeline directory onto ``device`` (default: CUDA if present, else CPU).

    Raises ModelNotFound when ``path`` is not a diffusers pipeline directory or its weights are
    missing, and BadInput when diffusers has no pipeline class named ``pipeline_class``.
    """
    path = pathlib.Path(path)
    device = device or _default_device()
    cls = getattr(diffusers, pipeline_class, None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
        raise BadInput(f"{pipeline_class!r} is not a diffusers pipeline class")
    if not (path / "model_index.json").is_file():
        raise ModelNotFound(
            f"no diffusers pipeline at {path} (looked for {path / 'model_index.json'}); "
            f"to use a model, {_REGISTER_HINT}"
        )
    # diffusers has no switch of its own for its component-loading bar: it follows the
    # Hugging Face one (HF_HUB_DISABLE_PROGRESS_BARS), as transformers does.
    if huggingface_hub.utils.are_progress_bars_disabled():
        diffusers.utils.logging.disable_progress_bar()
    try:
        pipe = cls.from_pretrained(path, local_files_only=True, dtype=_dtype_for(device))
    except OSError as exc:
        raise ModelNotFound(
            f"the diffusers pipeline at {path} is incomplete ({exc}); "
            f"to use a model, {_REGISTER_HINT}"
        ) from exc
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def get_pipeline(
    path: pathlib.Path | str,
    pipeline_class: str = "WanPipeline",
    device: str | None = None,
) -> LoadedPipeline:
    """Return the process-wide pipeline for (path, class, device), loading it on first use."""
    device = device or _default_device()
    key = (str(pathlib.Path(path).resolve()), pipeline_class, device)
    # Loading under the lock makes concurrent first uses wait for one load instead of each
    # loading a copy of the weights.
    with _cache_lock:
        if key not in _cache:
            _cache[key] = LoadedPipeline(
                pipe=load_pipeline(key[0], pipeline_class, device), lock=threading.Lock()
            )
        return _cache[key]


def frames_for(pipeline_class: str, n: int) -> int:
    """The frame count to ask ``pipeline_class`` for so that it delivers at least ``n`` frames."""
    if n < 1:
        raise ValueError(f"cannot render {n} frames")
    for prefix, stride in _FRAME_STRIDES.items():
        if pipeline_class.startswith(prefix):
            return -(-(n - 1) // stride) * stride + 1
    return n


class RenderedVideo(NamedTuple):
    """A render's frames, and the share of its raw output values that were NaN or infinite."""

    frames: np.ndarray
    nonfinite_share: float


def render_video(
    pipe: diffusers.DiffusionPipeline,
    *,
    prompt: str,
    negative_prompt: str,
    seed: int,
    num_frames: int,
    width: int,
    height: int,
    steps: int,
    guidance: float,
) -> RenderedVideo:
    """Render one video: exactly ``num_frames`` RGB frames, uint8 (frames, h, w, 3), and the
    share of non-finite values the pipeline returned (they become black in the frames; the
    quality gate rejects them, since the uint8 file cannot show them).

    The same arguments give bitwise-identical frames on the same device and torch thread count.
    The caller must hold the pipeline's lock (see LoadedPipeline).
    """
    generator = torch.Generator(device=pipe.device).manual_seed(seed)
    with torch.inference_mode():
        video = pipe(
            prompt=prompt,
            negative_prompt=negative_prompt,
            num_frames=frames_for(type(pipe).__name__, num_frames),
            width=width,
            height=height,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generator,
            output_type="pt",
        ).frames[0][:num_frames]
        finite = torch.isfinite(video)
        nonfinite_share = 1.0 - finite.float().mean().item()
        # Quantize on the pipeline's device: a quarter of the bytes cross to the host.
        clean = torch.where(finite, video.float(), torch.zeros((), device=video.device))
        frames = (clean * 255).round().clamp(0, 255).to(torch.uint8)
    return RenderedVideo(frames.permute(0, 2, 3, 1).contiguous().cpu().numpy(), nonfinite_share)
