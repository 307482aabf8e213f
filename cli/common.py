"""What every `factory` command shares: the --store and --registry options, opening the store."""

from pathlib import Path
from typing import Annotated

import typer

from factory.settings import Settings
from storage.objectstore import ObjectStore
from storage.open import open_store

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Object store: a directory, or s3://bucket/prefix (standard AWS settings apply: "
        "AWS_ENDPOINT_URL, AWS_PROFILE, AWS_REGION). Default: FACTORY_STORE, else "
        "~/.cache/asset-factory/store.",
        show_default=False,
    ),
]
RegistryOption = Annotated[
    Path | None,
    typer.Option(
        "--registry",
        help="Extra model registry (TOML) merged over the built-in one. Default: FACTORY_REGISTRY.",
        show_default=False,
    ),
]


def open_store_option(spec: str | None, settings: Settings) -> ObjectStore:
    """The store a command's --store names, or the settings' default."""
    return open_store(spec or settings.store_spec)
