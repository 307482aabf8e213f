"""The model registry: which models exist, where their weights are, who trained and owns them.

The registry is TOML: a built-in file (``factory/models.toml``) plus an optional
user file whose entries override built-ins by name. Resolving an entry finds
its weights on local disk (never on the network) and fingerprints them.
"""

import math
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from factory.errors import BadInput, validation_problems

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


class ModelInfo(BaseModel):
    """What a record, a cache entry or a manifest says of a model: facts, never a local path."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    weights_fingerprint: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    training_provenance: list[ProvenanceSource]
    royalty_routing: list[RoyaltyShare]


class ResolvedModel(BaseModel):
    """A registry entry whose weights were found on this worker's disk and fingerprinted."""

    model_config = ConfigDict(frozen=True)

    entry: ModelEntry
    path: Path
    fingerprint: str

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.entry.name,
            weights_fingerprint=self.fingerprint,
            training_provenance=self.entry.training_provenance,
            royalty_routing=self.entry.royalty_routing,
        )


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
            problems = "; ".join(validation_problems(error, root=name))
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
