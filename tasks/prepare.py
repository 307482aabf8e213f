"""Everything a production needs before the first render: a writable store, models, inputs.

All checks that can fail on bad input run here, before any asset is written, so
a refused order leaves nothing behind.
"""

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from factory.assets import Recorded
from factory.errors import BadInput
from factory.orders import Order
from factory.registry import ResolvedModel, load_registry
from factory.settings import Settings
from media.weights import resolve_model
from storage.objectstore import ObjectStore
from storage.open import open_store
from tasks.provenance import RunContext, ensure_identity, ingest_input

_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


class Production(BaseModel):
    """The resolved inputs of one order."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    store: ObjectStore
    models: dict[str, ResolvedModel]
    background: Recorded | None
    logo: Recorded | None


def _read_image(path_text: str, role: str) -> tuple[bytes, str]:
    path = Path(path_text).expanduser()
    media_type = _IMAGE_TYPES.get(path.suffix.lower())
    if media_type is None:
        raise BadInput(f"composite.{role} {path} must be a .png or .jpg file")
    try:
        return path.read_bytes(), media_type
    except OSError as error:
        raise BadInput(f"composite.{role} {path} cannot be read: {error.strerror}") from None


def check_order(
    order: Order, settings: Settings, store_spec: str | None = None
) -> tuple[ObjectStore, dict[str, ResolvedModel]]:
    """Refuse an order that cannot be produced, before anything is written or started.

    Returns the opened, writable store and the order's models with their weights found.
    """
    registry = load_registry(settings.registry)
    entries = {name: registry.get(name) for name in sorted({s.model for s in order.segments})}
    for role in ("background_image", "logo"):
        value = getattr(order.composite, role)
        if value:
            _read_image(value, role)
    store = open_store(store_spec or settings.store_spec)
    store.check_writable()
    models = {name: resolve_model(entry, settings.models_dir) for name, entry in entries.items()}
    return store, models


def prepare(
    order: Order, settings: Settings, store_spec: str | None, context: RunContext
) -> Production:
    """Check the order, make sure the signing identity exists, then ingest its input images."""
    store, models = check_order(order, settings, store_spec)
    ensure_identity(store)
    inputs = {}
    for role in ("background_image", "logo"):
        value = getattr(order.composite, role)
        if value:
            data, media_type = _read_image(value, role)
            inputs[role] = ingest_input(store, data, media_type, role, context)
    return Production(
        store=store,
        models=models,
        background=inputs.get("background_image"),
        logo=inputs.get("logo"),
    )
