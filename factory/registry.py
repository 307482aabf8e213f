"""The model registry: which models exist, where their weights are, who trained and owns them.

The registry is TOML: a built-in file (``factory/models.toml``) plus an optional
user file whose entries override built-ins by name. Resolving an entry finds
its weights on local disk (never on the network) and fingerprints them.
"""

import hashlib
import json
import math
import os
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory.errors import BadInput, ModelNotFound

BUILTIN_REGISTRY = Path(__file__).with_name("models.toml")
REGISTER_HINT = (
    "register a model by adding [models.NAME] with path = '/dir/of/a/diffusers/pipeline' "
    "to a TOML file and passing it with --registry or FACTORY_REGISTRY "
    "(see examples/models.toml)"
)


class ProvenanceSource(BaseModel):
    """One body of data the model was trained on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1)
    license: str | None = None
    url: str | None = None


class RoyaltyShare(BaseModel):
    """A rights holder's share of the royalties a delivered minute owes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    holder: str = Field(min_length=1)
    share: float = Field(gt=0, le=1)


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    path: Path | None = Field(default=None, description="Local diffusers pipeline directory")
    hub_id: str | None = Field(default=None, description="Repo id already in the local HF cache")
    builtin: str | None = Field(default=None, description="A pipeline the factory builds itself")
    pipeline_class: str = "WanPipeline"
    default_steps: int = Field(default=30, ge=1, le=200)
    render_width: int = Field(default=832, ge=16, le=4096, multiple_of=16)
    render_height: int = Field(default=480, ge=16, le=4096, multiple_of=16)
    weights_sha256: str | None = Field(
        default=None, description="Expected fingerprint; resolving fails when the weights differ"
    )
    training_provenance: list[ProvenanceSource] = Field(min_length=1)
    royalty_routing: list[RoyaltyShare] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "ModelEntry":
        given = [f for f in ("path", "hub_id", "builtin") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of path, hub_id or builtin for model {self.name!r} "
                f"(got {', '.join(given) or 'none'})"
            )
        total = sum(share.share for share in self.royalty_routing)
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(
                f"royalty_routing shares of model {self.name!r} sum to {total:g}; "
                "they must sum to 1"
            )
        holders = [share.holder for share in self.royalty_routing]
        if len(set(holders)) != len(holders):
            raise ValueError(f"royalty_routing of model {self.name!r} names a holder twice")
        return self


class ResolvedModel(BaseModel):
    """A registry entry whose weights were found on disk and fingerprinted."""

    model_config = ConfigDict(frozen=True)

    entry: ModelEntry
    path: Path
    fingerprint: str


class Registry(BaseModel):
    models: dict[str, ModelEntry]
    sources: list[Path]

    def get(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "(none)"
            raise BadInput(
                f"unknown model {name!r}; known models: {known}. {REGISTER_HINT}"
            ) from None


def _read_entries(path: Path) -> dict[str, ModelEntry]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"model registry {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise BadInput(f"model registry {path} cannot be read: {error}") from None
    models = data.get("models")
    if not isinstance(models, dict):
        raise BadInput(f"model registry {path} has no [models.NAME] tables. {REGISTER_HINT}")
    entries = {}
    for name, table in models.items():
        if not isinstance(table, dict):
            raise BadInput(f"model registry {path}: models.{name} must be a table")
        table = dict(table)
        if "path" in table and not Path(table["path"]).expanduser().is_absolute():
            table["path"] = path.parent / table["path"]
        try:
            entries[name] = ModelEntry.model_validate({"name": name, **table})
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or name}: "
                + e["msg"].removeprefix("Value error, ")
                for e in error.errors()
            )
            raise BadInput(f"model registry {path}, models.{name}: {problems}") from None
    return entries


def load_registry(extra: Path | None = None) -> Registry:
    """The built-in registry, with ``extra``'s entries overriding it by name."""
    models = _read_entries(BUILTIN_REGISTRY)
    sources = [BUILTIN_REGISTRY]
    if extra is not None:
        models.update(_read_entries(Path(extra).expanduser()))
        sources.append(Path(extra).expanduser())
    return Registry(models=models, sources=sources)


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
        from factory.tinymodel import TINY_MODEL_VERSION, ensure_tiny_model

        if entry.builtin != TINY_MODEL_VERSION:
            raise ModelNotFound(
                f"model {entry.name!r} asks for built-in {entry.builtin!r}, but this factory "
                f"builds only {TINY_MODEL_VERSION!r}"
            )
        return ensure_tiny_model(models_dir)
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
