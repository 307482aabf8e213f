"""Finding a registered model's weights on local disk and fingerprinting them.

The factory never downloads weights: a path, a repository already in the local
Hugging Face cache, or the built-in tiny model that the factory builds itself.
"""

import hashlib
import json
import os
from pathlib import Path

from factory.errors import ModelNotFound
from factory.registry import REGISTER_HINT, ModelEntry, ResolvedModel
from media.tinymodel import BUILTIN_RECIPES, ensure_tiny_model


def _pipeline_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def weights_fingerprint(root: Path, cache_file: Path | None = None) -> str:
    """SHA-256 over every file of a pipeline directory (weights and configs), by relative path.

    Configs are included because a scheduler or VAE config changes the output as
    surely as a weight does. Hashing a real checkpoint takes seconds per GB, so
    results are cached against each file's size and mtime.
    """
    files = _pipeline_files(root)
    stamp = [[str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    cache: dict[str, dict] = {}
    key = str(root.resolve())
    if cache_file is not None and cache_file.exists():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}
        hit = cache.get(key)
        if hit and hit.get("stamp") == stamp:
            return hit["fingerprint"]
    outer = hashlib.sha256()
    for path in files:
        inner = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                inner.update(chunk)
        outer.update(f"{path.relative_to(root).as_posix()}\0{inner.hexdigest()}\n".encode())
    fingerprint = outer.hexdigest()
    if cache_file is not None:
        cache[key] = {"stamp": stamp, "fingerprint": fingerprint}
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        temp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
        temp.write_text(json.dumps(cache))
        os.replace(temp, cache_file)
    return fingerprint


def _locate(entry: ModelEntry, models_dir: Path) -> Path:
    if entry.builtin is not None:
        if entry.builtin not in BUILTIN_RECIPES:
            raise ModelNotFound(
                f"model {entry.name!r} asks for built-in {entry.builtin!r}, but this factory "
                f"builds only {', '.join(map(repr, BUILTIN_RECIPES))}"
            )
        return ensure_tiny_model(models_dir, entry.builtin)
    if entry.path is not None:
        path = entry.path.expanduser()
        if not (path / "model_index.json").is_file():
            raise ModelNotFound(
                f"model {entry.name!r}: no diffusers pipeline at {path} "
                f"(looked for {path / 'model_index.json'}). "
                f"Put the weights there or {REGISTER_HINT}"
            )
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(entry.hub_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        from huggingface_hub.constants import HF_HUB_CACHE

        raise ModelNotFound(
            f"model {entry.name!r}: {entry.hub_id} is not in the local Hugging Face cache "
            f"({HF_HUB_CACHE}); the factory never downloads weights. Download it yourself "
            f"(huggingface-cli download {entry.hub_id}) or {REGISTER_HINT}"
        ) from None


def resolve_model(entry: ModelEntry, models_dir: Path) -> ResolvedModel:
    """Find an entry's weights on local disk and fingerprint them."""
    path = _locate(entry, models_dir)
    fingerprint = weights_fingerprint(path, models_dir / "fingerprints.json")
    if entry.weights_sha256 and entry.weights_sha256 != fingerprint:
        raise ModelNotFound(
            f"model {entry.name!r}: the weights at {path} have fingerprint {fingerprint}, but the "
            f"registry expects {entry.weights_sha256}. Restore the expected weights or update "
            "weights_sha256 in the registry"
        )
    return ResolvedModel(entry=entry, path=path, fingerprint=fingerprint)
