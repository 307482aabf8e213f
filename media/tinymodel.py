"""A tiny Wan text-to-video pipeline built from configs, for tests, demos and CPU-only machines.

No package ships diffusion weights and this machine cannot reach the hub, so the factory builds
its own model: random weights from fixed seeds (the VAE's shaped to decode coherent video), a
tokenizer made in memory. Its frames are
noise-like but deterministic, and rendering with it runs every real code path (tokenizer, text
encoder, denoiser, scheduler, VAE decode) through the same loader as a real checkpoint.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import string
import tempfile
from typing import TYPE_CHECKING

# torch, diffusers and transformers are imported where a model is built: finding one
# already built (every run but the first) must not pay their seconds of import.
if TYPE_CHECKING:
    import diffusers
    import transformers

# Names the recipe below. Change it whenever a config or seed changes, so a model directory
# built by an older recipe is never mistaken for the current one.
TINY_MODEL_VERSION = "tiny-wan-v1"
# A larger sibling (a wider, deeper denoiser; the same VAE, which dominates the cost), so an
# escalation ladder from a cheaper model to a bigger one runs without any downloaded weights.
TINY_PLUS_MODEL_VERSION = "tiny-wan-plus-v1"

# 61 frames at 192x96 render in about 1 s on two CPU cores, nearly all of it in the VAE decode:
# time grows with the pixel count, while going from 2 to 8 steps adds only about 10%.
TINY_RENDER_WIDTH = 192
TINY_RENDER_HEIGHT = 96
TINY_DEFAULT_STEPS = 4

# One seed per component, so changing one component's config leaves the others' weights alone.
COMPONENT_SEEDS = {"text_encoder": 1, "transformer": 2, "vae": 3}

TOKENIZER_CHARACTERS = string.ascii_letters + string.digits + string.punctuation

TEXT_ENCODER_CONFIG = {
    # vocab_size is filled in from the tokenizer so the two cannot drift apart.
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 32,
    "is_encoder_decoder": False,
}

TRANSFORMER_CONFIG = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": TEXT_ENCODER_CONFIG["d_model"],
    "freq_dim": 256,
    "ffn_dim": 32,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 32,
}

# Four levels (three downsampling stages) give the 8x spatial factor real Wan VAEs have; the cost
# of a tiny pipeline is dominated by the VAE, and a 2x VAE would be 10 to 30 times slower. The
# decoder halves its channels at each upsampling, so narrower settings than these squeeze the
# latent through a single channel and every seed decodes to nearly the same video.
VAE_CONFIG = {
    "base_dim": 2,
    "z_dim": TRANSFORMER_CONFIG["in_channels"],
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 1,
    "temperal_downsample": [False, True, True],
    "scale_factor_spatial": 8,
    "scale_factor_temporal": 4,
}

SCHEDULER_CONFIG = {"shift": 5.0}

# What each built-in recipe changes in the denoiser, and its seeds.
BUILTIN_RECIPES: dict[str, dict[str, object]] = {
    TINY_MODEL_VERSION: {"transformer": {}, "seeds": COMPONENT_SEEDS},
    TINY_PLUS_MODEL_VERSION: {
        "transformer": {
            "num_attention_heads": 4,
            "attention_head_dim": 16,
            "ffn_dim": 96,
            "num_layers": 4,
        },
        "seeds": {"text_encoder": 11, "transformer": 12, "vae": 13},
    },
}


def _build_tokenizer() -> transformers.T5Tokenizer:
    import transformers

    # A Unigram vocabulary of single characters tokenizes any ASCII prompt without a
    # sentencepiece model file; T5's special tokens must come first (pad=0, eos=1, unk=2).
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(char, -3.0) for char in TOKENIZER_CHARACTERS]
    return transformers.T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def _shape_vae_weights(vae: diffusers.AutoencoderKLWan) -> None:
    """Give random VAE weights the two traits of a trained video VAE that renders rely on.

    Randomly initialised, the decoder's biases outweigh its input, so the seed barely changes
    the video, and its temporal kernels are independent per time step, so consecutive frames
    differ as much as two unrelated videos. Zero biases make the output a function of the latent;
    identical temporal taps and identical halves of each temporal upsampler make the decoder a
    temporal low-pass, so frames from one latent video change smoothly.
    """
    import torch

    with torch.no_grad():
        for name, param in vae.named_parameters():
            if name.endswith("bias"):
                param.zero_()
        for name, module in vae.named_modules():
            if isinstance(module, torch.nn.Conv3d) and module.kernel_size[0] > 1:
                weight = module.weight
                weight.copy_(weight.mean(dim=2, keepdim=True).expand_as(weight))
            # Wan's temporal upsampler emits 2c channels that become two consecutive frames.
            if name.endswith("time_conv") and module.out_channels == 2 * module.in_channels:
                module.weight[module.in_channels :] = module.weight[: module.in_channels]


def build_tiny_pipeline(version: str = TINY_MODEL_VERSION) -> diffusers.WanPipeline:
    """Build a built-in tiny Wan pipeline in memory; the same weights on every call and machine."""
    import diffusers
    import torch
    import transformers

    recipe = BUILTIN_RECIPES[version]
    seeds: dict[str, int] = recipe["seeds"]  # type: ignore[assignment]
    transformer_config = {**TRANSFORMER_CONFIG, **recipe["transformer"]}  # type: ignore[dict-item]
    tokenizer = _build_tokenizer()
    # fork_rng restores the caller's global RNG state afterwards: seeding here must not change
    # what the caller's own random draws produce.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds["text_encoder"])
        text_encoder = transformers.UMT5EncoderModel(
            transformers.UMT5Config(vocab_size=len(tokenizer), **TEXT_ENCODER_CONFIG)
        )
        torch.manual_seed(seeds["transformer"])
        transformer = diffusers.WanTransformer3DModel(**transformer_config)
        torch.manual_seed(seeds["vae"])
        vae = diffusers.AutoencoderKLWan(**VAE_CONFIG)
    _shape_vae_weights(vae)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    # Constructed modules start in train mode, where T5's dropout makes every call differ.
    for module in (text_encoder, transformer, vae):
        module.eval()
    return diffusers.WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
    )


def ensure_tiny_model(root: pathlib.Path, version: str = TINY_MODEL_VERSION) -> pathlib.Path:
    """Return ``root / version``, building and saving that built-in model there if absent."""
    if version not in BUILTIN_RECIPES:
        raise ValueError(f"no built-in model {version!r}; built-ins: {', '.join(BUILTIN_RECIPES)}")
    target = root / version
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    # Save into a sibling and rename it into place: a crash leaves only a stray temporary
    # directory, never a half-written model under the final name.
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        build_tiny_pipeline(version).save_pretrained(staging)
        try:
            os.rename(staging, target)
        except OSError:
            # Another process won the race; its directory is as good as ours.
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
