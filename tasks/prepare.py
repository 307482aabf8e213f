"""Everything a production needs before the first render: its models and input images.

All checks that can fail on bad input run here, before any asset is written, so
a refused order leaves nothing behind.
"""

import stat
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from factory.assets import Recorded
from factory.errors import BadInput
from factory.orders import Order, image_ref_kind
from factory.registry import Registry, ResolvedModel
from media.captions import check_captions
from media.images import MAX_IMAGE_BYTES, check_image_bytes, inspect_image
from media.weights import resolve_model
from quality.thresholds import Thresholds, load_thresholds
from storage.inputs import InputSource, file_path
from tasks.provenance import RunContext, ingest_input
from tasks.resources import Resources

_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_IMAGE_ROLES = ("background_image", "logo")


class Production(BaseModel):
    """The resolved inputs of one order: its models found on disk, the gate's thresholds,
    its images ingested."""

    model_config = ConfigDict(frozen=True)

    models: dict[str, ResolvedModel]
    thresholds: Thresholds = Field(default_factory=load_thresholds)
    background: Recorded | None
    logo: Recorded | None


def _read_image(ref: str, role: str, inputs: InputSource) -> tuple[bytes, str]:
    """An input image's bytes and media type, checked (format, size, decoding) on the way.

    ``ref`` is a local path or file:// URI, a store digest, or an s3:// URI (see
    ``factory.orders.ImageRef``); every kind goes through the same checks.
    """
    kind = image_ref_kind(ref)
    if kind in ("digest", "s3"):
        what = f"composite.{role} {ref}"
        data = inputs.read(ref, what)
        image = inspect_image(data, what)
        suffix = Path(urlsplit(ref).path).suffix.lower() if kind == "s3" else ""
        if suffix in _EXTENSIONS and _EXTENSIONS[suffix] != image.format:
            raise BadInput(f"{what} holds {image.format} data but is named {suffix}")
        return data, image.media_type
    return read_image_file(file_path(ref), role)


def read_image_file(path: Path, role: str) -> tuple[bytes, str]:
    """A local image file's bytes and media type, checked as every order input is."""
    what = f"composite.{role} {path}"
    expected = _EXTENSIONS.get(path.suffix.lower())
    if expected is None:
        raise BadInput(f"{what} must be a .png or .jpg file")
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise BadInput(f"{what} is not a regular file; give a PNG or JPEG file")
        # Refused from its size alone: a 1 GiB file is never read.
        check_image_bytes(info.st_size, what)
        with path.open("rb") as handle:
            data = handle.read(MAX_IMAGE_BYTES + 1)
    except OSError as error:
        raise BadInput(f"{what} cannot be read: {error.strerror or error}") from None
    image = inspect_image(data, what)
    if image.format != expected:
        raise BadInput(
            f"{what} holds {image.format} data but is named {path.suffix}: rename it to "
            f"{'.png' if image.format == 'PNG' else '.jpg'}"
        )
    return data, image.media_type


def _images(order: Order, inputs: InputSource) -> dict[str, tuple[bytes, str]]:
    return {
        role: _read_image(value, role, inputs)
        for role in _IMAGE_ROLES
        if (value := getattr(order.composite, role))
    }


def check_order(
    order: Order, registry: Registry, models_dir: Path, inputs: InputSource | None = None
) -> dict[str, ResolvedModel]:
    """Refuse an order that cannot be produced, before anything is written or started.

    Checks the models, the input images (format, size, decoding; digests and s3:// URIs are
    read through ``inputs``, the run's store) and that every caption character has a
    glyph. Returns the order's models with their weights found and fingerprinted; nothing
    is written but the fingerprint cache beside the models.
    """
    names = {name for segment in order.segments for name in segment.ladder}
    entries = {name: registry.get(name) for name in sorted(names)}
    _images(order, inputs or InputSource())
    check_captions(order.composite.captions)
    return {name: resolve_model(entry, models_dir) for name, entry in entries.items()}


def prepare(
    order: Order, resources: Resources, models: dict[str, ResolvedModel], context: RunContext
) -> Production:
    """The production of a checked order: its models, and its input images ingested."""
    thresholds = load_thresholds(resources.settings.qc_thresholds)
    inputs = {
        role: ingest_input(resources, data, media_type, role, context)
        for role, (data, media_type) in _images(
            order, InputSource(resources.store, resources.settings.store_timeouts)
        ).items()
    }
    return Production(
        models=models,
        thresholds=thresholds,
        background=inputs.get("background_image"),
        logo=inputs.get("logo"),
    )
