"""Input images (logo, background image): what the factory accepts, checked before any work.

An order's images are checked here when the order is, before anything is rendered or
stored: a file that is not a PNG or JPEG, that is too large, or that does not decode is
refused with the reason, so a refused order leaves nothing behind.
"""

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from factory.errors import BadInput

# Documented in the README ("Orders"). Backgrounds are scaled to cover at most 3840×2160
# and logos to a fraction of the width, so larger images only cost memory and time.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = 40_000_000
IMAGE_MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}


@dataclass(frozen=True)
class ImageInfo:
    """What an accepted input image is: its format, media type and pixel size."""

    format: str
    media_type: str
    width: int
    height: int


def inspect_image(data: bytes, what: str) -> ImageInfo:
    """Check that ``data`` is a PNG or JPEG within the limits that decodes completely.

    ``what`` names the image in the error (for example ``composite.logo /path/logo.png``).
    The pixel size is read from the header and checked before anything is decoded.
    """
    check_image_bytes(len(data), what)
    try:
        with warnings.catch_warnings():
            # Our own pixel limit is lower than Pillow's bomb warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=tuple(IMAGE_MEDIA_TYPES))
        with image:
            width, height = image.size
            if (
                max(width, height) > MAX_IMAGE_SIDE
                or width * height > MAX_IMAGE_PIXELS
                or min(width, height) < 1
            ):
                raise BadInput(
                    f"{what} is {width}×{height} pixels; input images may be at most "
                    f"{MAX_IMAGE_SIDE} pixels a side and {MAX_IMAGE_PIXELS / 1e6:g} megapixels: "
                    "scale it down"
                )
            image.load()
            return ImageInfo(image.format, IMAGE_MEDIA_TYPES[image.format], width, height)
    except UnidentifiedImageError:
        raise BadInput(
            f"{what} is not a PNG or JPEG image ({len(data)} bytes that start with "
            f"{data[:8]!r}); give a PNG or JPEG file"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadInput(
            f"{what} is not a readable PNG or JPEG image ({str(error)[:120]}); "
            "save it again as PNG or JPEG"
        ) from None


def check_image_bytes(size: int, what: str) -> None:
    """Refuse an image file of ``size`` bytes when it is over the limit (before reading it)."""
    if size > MAX_IMAGE_BYTES:
        raise BadInput(
            f"{what} is {_mib(size)}; input images may be at most {_mib(MAX_IMAGE_BYTES)}: "
            "scale it down or compress it"
        )


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
