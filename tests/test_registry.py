from pathlib import Path

import pytest

from factory.errors import BadInput, ModelNotFound
from factory.registry import load_registry
from media.weights import resolve_model, weights_fingerprint

BASE = """
[models.{name}]
path = "{path}"
pipeline_class = "WanPipeline"
render_width = 128
render_height = 64

[[models.{name}.training_provenance]]
source = "licensed archive"

[[models.{name}.royalty_routing]]
holder = "a"
share = {a}

[[models.{name}.royalty_routing]]
holder = "b"
share = {b}
"""


def _registry(tmp_path: Path, name="mine", path="/nonexistent/model", a=0.5, b=0.5) -> Path:
    file = tmp_path / "models.toml"
    file.write_text(BASE.format(name=name, path=path, a=a, b=b))
    return file


def test_builtin_registry_has_tiny():
    registry = load_registry()
    tiny = registry.get("tiny")
    assert tiny.builtin
    assert sum(share.share for share in tiny.royalty_routing) == pytest.approx(1)


def test_example_registry_validates():
    registry = load_registry(Path(__file__).parent.parent / "examples" / "models.toml")
    assert {"tiny", "wan-1_3b", "studio-local"} <= set(registry.models)


def test_unknown_model_lists_known_ones(tmp_path):
    registry = load_registry(_registry(tmp_path))
    with pytest.raises(BadInput, match=r"unknown model 'nope'; known models: mine, tiny"):
        registry.get("nope")


def test_royalty_shares_must_sum_to_one(tmp_path):
    with pytest.raises(BadInput, match=r"sum to 0\.9; they must sum to 1"):
        load_registry(_registry(tmp_path, a=0.5, b=0.4))


def test_missing_weights_name_where_it_looked(tmp_path):
    registry = load_registry(_registry(tmp_path, path=str(tmp_path / "absent")))
    with pytest.raises(ModelNotFound) as caught:
        resolve_model(registry.get("mine"), tmp_path / "models")
    assert str(tmp_path / "absent" / "model_index.json") in str(caught.value)
    assert "--registry" in str(caught.value)


def test_fingerprint_covers_every_file_and_is_cached(tmp_path):
    root = tmp_path / "pipe"
    (root / "unet").mkdir(parents=True)
    (root / "model_index.json").write_text("{}")
    (root / "unet" / "w.safetensors").write_bytes(b"\x00" * 10)
    cache = tmp_path / "fp.json"
    first = weights_fingerprint(root, cache)
    assert weights_fingerprint(root, cache) == first
    (root / "unet" / "w.safetensors").write_bytes(b"\x01" * 10)
    assert weights_fingerprint(root, cache) != first


def test_expected_fingerprint_mismatch_is_refused(tmp_path):
    root = tmp_path / "pipe"
    root.mkdir()
    (root / "model_index.json").write_text("{}")
    file = _registry(tmp_path, path=str(root))
    text = file.read_text().replace(
        'pipeline_class = "WanPipeline"', 'pipeline_class = "WanPipeline"\nweights_sha256 = "00"'
    )
    file.write_text(text)
    with pytest.raises(ModelNotFound, match="registry expects 00"):
        resolve_model(load_registry(file).get("mine"), tmp_path / "models")
