import hashlib
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import diffusers
import numpy as np
import pytest
import torch

from factory.errors import ModelNotFound
from media import tinymodel
from media.pipelines import frames_for, get_pipeline, load_pipeline, render_video
from media.tinymodel import (
    TINY_DEFAULT_STEPS,
    TINY_MODEL_VERSION,
    TINY_RENDER_HEIGHT,
    TINY_RENDER_WIDTH,
    ensure_tiny_model,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# A different thread count changes the bits, so every bitwise comparison renders with this many.
THREADS = 1

RENDER = {
    "prompt": "a red fox running through snow",
    "negative_prompt": "blurry",
    "width": TINY_RENDER_WIDTH,
    "height": TINY_RENDER_HEIGHT,
    "steps": TINY_DEFAULT_STEPS,
    "guidance": 5.0,
}


def _digests(directory: pathlib.Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return ensure_tiny_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_pipe(tiny_model_dir: pathlib.Path) -> diffusers.DiffusionPipeline:
    return load_pipeline(tiny_model_dir, device="cpu")


@pytest.fixture
def pinned_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _render(pipe: diffusers.DiffusionPipeline, seed: int, num_frames: int = 13) -> np.ndarray:
    return render_video(pipe, seed=seed, num_frames=num_frames, **RENDER).frames


def test_loads_offline_in_a_fresh_process_and_renders_the_same_bits(
    tiny_model_dir: pathlib.Path,
    tiny_pipe: diffusers.DiffusionPipeline,
    pinned_threads: None,
    tmp_path: pathlib.Path,
) -> None:
    out = tmp_path / "frames.npy"
    script = (
        "import sys, numpy, torch\n"
        "from media.pipelines import load_pipeline, render_video\n"
        f"torch.set_num_threads({THREADS})\n"
        "pipe = load_pipeline(sys.argv[1])\n"
        f"numpy.save(sys.argv[2], render_video(pipe, seed=7, num_frames=5, **{RENDER!r}).frames)\n"
    )
    # An empty HF_HOME proves nothing came from a hub cache either.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    subprocess.run(
        [sys.executable, "-c", script, str(tiny_model_dir), str(out)],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    assert np.array_equal(np.load(out), _render(tiny_pipe, seed=7, num_frames=5))


@pytest.mark.parametrize("num_frames", [13, 14, 1])
def test_render_returns_exactly_the_frames_asked_for(
    tiny_pipe: diffusers.DiffusionPipeline, num_frames: int
) -> None:
    frames = _render(tiny_pipe, seed=0, num_frames=num_frames)
    assert frames.shape == (num_frames, TINY_RENDER_HEIGHT, TINY_RENDER_WIDTH, 3)
    assert frames.dtype == np.uint8


def test_same_seed_renders_identical_bits(
    tiny_pipe: diffusers.DiffusionPipeline, pinned_threads: None
) -> None:
    assert np.array_equal(_render(tiny_pipe, seed=3), _render(tiny_pipe, seed=3))


def test_frames_are_one_coherent_video_that_depends_on_the_seed(
    tiny_pipe: diffusers.DiffusionPipeline,
) -> None:
    video = _render(tiny_pipe, seed=1).astype(np.int16)
    other = _render(tiny_pipe, seed=2).astype(np.int16)
    assert not np.array_equal(video, other)
    step_to_next_frame = np.abs(np.diff(video, axis=0)).mean()
    step_to_other_seed = np.abs(video - other).mean()
    assert step_to_next_frame < step_to_other_seed / 2


def test_builds_are_byte_identical(tiny_model_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    rebuilt = ensure_tiny_model(tmp_path)
    assert rebuilt == tmp_path / TINY_MODEL_VERSION
    assert _digests(rebuilt) == _digests(tiny_model_dir)


def test_building_leaves_the_callers_random_state_alone() -> None:
    state = torch.random.get_rng_state()
    tinymodel.build_tiny_pipeline()
    assert torch.equal(torch.random.get_rng_state(), state)


def test_losing_the_rename_race_keeps_the_winners_model(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = tinymodel.build_tiny_pipeline

    def build_while_another_process_finishes_first(version: str) -> diffusers.WanPipeline:
        pipe = build(version)
        build(version).save_pretrained(tmp_path / version)
        return pipe

    monkeypatch.setattr(
        tinymodel, "build_tiny_pipeline", build_while_another_process_finishes_first
    )
    assert ensure_tiny_model(tmp_path) == tmp_path / TINY_MODEL_VERSION
    assert [path.name for path in tmp_path.iterdir()] == [TINY_MODEL_VERSION]
    assert (tmp_path / TINY_MODEL_VERSION / "model_index.json").is_file()


@pytest.mark.parametrize("directory_exists", [False, True])
def test_missing_model_raises_model_not_found_naming_the_path(
    tmp_path: pathlib.Path, directory_exists: bool
) -> None:
    missing = tmp_path / "no-such-model"
    if directory_exists:
        missing.mkdir()
    with pytest.raises(ModelNotFound, match="no-such-model") as excinfo:
        load_pipeline(missing, device="cpu")
    assert str(missing) in str(excinfo.value)
    assert "model registry" in str(excinfo.value)


def test_get_pipeline_shares_one_pipeline_per_directory(tiny_model_dir: pathlib.Path) -> None:
    first = get_pipeline(tiny_model_dir, device="cpu")
    again = get_pipeline(str(tiny_model_dir / ".." / tiny_model_dir.name), device="cpu")
    assert again is first


@pytest.mark.parametrize(
    ("pipeline_class", "n", "expected"),
    [
        ("WanPipeline", 1, 1),
        ("WanPipeline", 13, 13),
        ("WanPipeline", 14, 17),
        ("WanPipeline", 61, 61),
        ("LTXPipeline", 10, 17),
        ("LTXPipeline", 17, 17),
        ("AnimateDiffPipeline", 14, 14),
    ],
)
def test_frames_for_rounds_up_to_what_the_vae_decodes(
    pipeline_class: str, n: int, expected: int
) -> None:
    assert frames_for(pipeline_class, n) == expected
