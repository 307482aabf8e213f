"""What every `factory` command shares: the --store, --registry and --trust options, opening
the store and the keys a verifier trusts."""

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from factory.errors import FactoryError
from factory.settings import Settings
from storage.objectstore import ObjectStore
from storage.open import open_store
from storage.trust import TrustedKeys, load_trusted_keys, resolve_anchor

if TYPE_CHECKING:
    from storage.ancestry import Ancestry

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

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout, for scripts")
]

TrustOption = Annotated[
    str | None,
    typer.Option(
        "--trust",
        help="The factory root to trust: its fingerprint (sha256:…) or its trust file (the "
        "root's public key PEM), as `factory keys trust` prints them on the factory. Only keys "
        "that root certified count; keys merely present in the store do not. Default: "
        "FACTORY_TRUST, else this machine's own factory root.",
        show_default=False,
    ),
]


def trusted_keys(store: ObjectStore, trust: str | None, settings: Settings) -> TrustedKeys:
    """The keys that the root named by --trust (or the settings, or the local factory)
    certified in ``store``."""
    return load_trusted_keys(store, resolve_anchor(trust or settings.trust, settings.keys_dir))


def open_store_option(spec: str | None, settings: Settings) -> ObjectStore:
    """The store a command's --store names, or the settings' default."""
    return open_store(spec or settings.store_spec, settings.store_timeouts)


def lineage_from_index(settings: Settings, digest: str) -> "tuple[Ancestry, Path] | None":
    """``digest``'s ancestry from the floor warehouse's lineage index, and the index's
    path; None when there is no index or it lacks a record of the tree (not ingested
    yet, or rejected), so the caller walks the store instead."""
    from storage.warehouse import Warehouse

    try:
        index = Warehouse(*settings.warehouse).lineage_index
        if index is None or not index.exists():
            return None
        return index.ancestry(digest), index.path
    except (FactoryError, sqlite3.Error):
        return None
