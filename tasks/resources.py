"""The resources a production uses, built once by its entry point and passed down.

An entry point (a CLI command, a flow run, a deployment) reads ``Settings`` once and
opens everything here; tasks and stages receive the result as a value and never read
the environment themselves. Private keys stay inside ``Signers``, whose repr shows key
ids only, so a resources object can travel as a task parameter without leaking them.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factory.floor import load_price_card
from factory.registry import Registry, load_registry
from factory.settings import Settings
from media.credentials import CredentialSigner
from storage import keys
from storage.objectstore import ObjectStore
from storage.open import open_store
from storage.openlineage_config import openlineage_settings
from storage.trust import TrustAnchor, resolve_anchor
from storage.warehouse.lake import WarehouseLocation

if TYPE_CHECKING:
    from storage.openlineage import OpenLineageEmitter


@dataclass(frozen=True)
class Signers:
    """The factory's signing identity: the lineage key and the C2PA certificate chain."""

    lineage: keys.LineageSigner
    credentials: CredentialSigner

    @classmethod
    def load(cls, keys_dir: Path) -> "Signers":
        return cls(
            lineage=keys.load_signer(keys_dir),
            credentials=CredentialSigner(keys.load_c2pa_chain(keys_dir)),
        )


@dataclass(frozen=True)
class Resources:
    """Store, signers, settings, model registry and this worker's device, for one process.

    ``openlineage`` sends the runs' OpenLineage events; None when the client's settings
    do not configure it (then nothing is sent and the client is never imported).
    """

    settings: Settings
    store: ObjectStore
    signers: Signers
    registry: Registry
    device_class: str
    identity_created: bool = False
    openlineage: "OpenLineageEmitter | None" = None

    @property
    def warehouse(self) -> WarehouseLocation:
        return WarehouseLocation.of(*self.settings.warehouse)

    @property
    def trust_anchor(self) -> TrustAnchor:
        """The root this factory's own readers (the warehouse ingest) judge records by."""
        return resolve_anchor(self.settings.trust, self.settings.keys_dir)


def load_models(settings: Settings, registry: Path | str | None = None) -> Registry:
    """The model registry: the built-in one with ``registry`` (or the settings' own) over it."""
    extra = registry if registry is not None else settings.registry
    return load_registry(Path(extra) if extra is not None else None)


def open_resources(
    settings: Settings,
    device_class: str,
    store: str | None = None,
    registry: Registry | None = None,
) -> Resources:
    """Open the store (checked writable), make sure the signing identity exists, load it.

    ``store`` and ``registry`` override the settings' own; the public keys are published
    to the store on every open (write-once, so a no-op once there).
    """
    opened = open_store(store or settings.store_spec, settings.store_timeouts)
    opened.check_writable()
    models = registry or load_models(settings)
    _, created = keys.init(settings.keys_dir)
    keys.publish_public_keys(settings.keys_dir, opened)
    return Resources(
        settings=settings,
        store=opened,
        signers=Signers.load(settings.keys_dir),
        registry=models,
        device_class=device_class,
        identity_created=created,
        openlineage=open_openlineage(opened.url),
    )


def open_openlineage(store_url: str) -> "OpenLineageEmitter | None":
    """The OpenLineage emitter the client's standard settings ask for, or None."""
    lineage = openlineage_settings()
    if lineage is None:
        return None
    # Imported only when configured: the client takes 0.45 to 1 s to import (bench/RESULTS.md).
    from storage.openlineage import open_emitter

    return open_emitter(lineage, store_url, load_price_card())
