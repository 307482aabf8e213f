"""Lay rendered frames onto the output canvas with a caption and a logo.

Everything static (canvas, caption, logo) is prepared once per segment; per frame only the
content is scaled and the overlays are blended where they cross it. All arithmetic after
scaling is integer, so the same input always gives the same bytes.
"""

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, ImageOps

from factory.errors import BadInput
from factory.orders import CompositeSpec
from media.captions import caption_font, normalize_caption

# Semi-transparent black behind caption text keeps it legible on any content.
CAPTION_BOX_ALPHA = 160
CAPTION_MAX_LINES = 3
MIN_CAPTION_SIZE = 8

# Scaling a few frames per call is fastest: one call for a whole segment is 2–4× slower
# per frame (the output outgrows the caches) and keeps a second full-size copy alive.
SCALE_CHUNK = 8


@dataclass(frozen=True)
class _Overlay:
    """A premultiplied RGBA patch at (top, left) on the canvas, ready for integer blending."""

    top: int
    left: int
    premultiplied: np.ndarray  # (h, w, 3) uint16: colour × alpha / 255
    transparency: np.ndarray  # (h, w, 1) uint16: 255 − alpha

    @classmethod
    def from_rgba(cls, rgba: np.ndarray, top: int, left: int) -> "_Overlay":
        alpha = rgba[..., 3:].astype(np.uint16)
        premultiplied = _div255(rgba[..., :3].astype(np.uint16) * alpha)
        return cls(top, left, premultiplied, 255 - alpha)

    @property
    def bottom(self) -> int:
        return self.top + self.premultiplied.shape[0]

    @property
    def right(self) -> int:
        return self.left + self.premultiplied.shape[1]

    def clip(
        self, top: int, bottom: int, left: int, right: int
    ) -> tuple[int, int, int, int] | None:
        """The part of this patch inside a canvas rectangle, or None where they do not meet."""
        window = (
            max(top, self.top),
            min(bottom, self.bottom),
            max(left, self.left),
            min(right, self.right),
        )
        return window if window[0] < window[1] and window[2] < window[3] else None

    def blend(self, image: np.ndarray, top: int, bottom: int, left: int, right: int) -> None:
        """Blend this patch over ``image[..., top:bottom, left:right, :]`` in place.

        The window is in canvas coordinates and must lie inside the patch; ``image`` is one
        frame (H,W,3) or a batch (T,H,W,3).
        """
        rows = slice(top - self.top, bottom - self.top)
        cols = slice(left - self.left, right - self.left)
        region = image[..., top:bottom, left:right, :]
        under = _div255(region.astype(np.uint16) * self.transparency[rows, cols])
        # premultiplied ≤ alpha and under ≤ 255 − alpha, so the sum fits in a byte.
        region[...] = under + self.premultiplied[rows, cols]


class Compositor:
    """Prepares one segment's canvas and overlays, then composes its frames."""

    def __init__(
        self,
        spec: CompositeSpec,
        width: int,
        height: int,
        caption: str,
        background_image: bytes | None,
        logo: bytes | None,
    ) -> None:
        self.width = width
        self.height = height
        margin = max(2, round(min(width, height) * 0.04))
        canvas = _background(spec.background_color, background_image, width, height)
        overlays = [
            _caption_overlay(caption, spec, width, height, margin),
            _logo_overlay(logo, spec, width, height, margin) if logo is not None else None,
        ]
        self._overlays = [overlay for overlay in overlays if overlay is not None]
        # Outside the content rectangle the canvas never changes, so the overlays are baked
        # into it here; per frame they are blended only where they cross the content.
        for overlay in self._overlays:
            overlay.blend(canvas, overlay.top, overlay.bottom, overlay.left, overlay.right)
        self._canvas = canvas

    def content_box(self, frame_height: int, frame_width: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of a frame of this size scaled to fit and centred."""
        scale = min(self.width / frame_width, self.height / frame_height)
        width = min(self.width, max(1, round(frame_width * scale)))
        height = min(self.height, max(1, round(frame_height * scale)))
        return (self.height - height) // 2, (self.width - width) // 2, height, width

    def compose(self, frames: np.ndarray) -> np.ndarray:
        """(T,h,w,3) uint8 frames at model size → (T,height,width,3) uint8 composited frames."""
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise BadInput(
                f"frames must be uint8 with shape (T, h, w, 3), got {frames.dtype} {frames.shape}"
            )
        count, frame_height, frame_width = frames.shape[:3]
        top, left, height, width = self.content_box(frame_height, frame_width)
        bottom, right = top + height, left + width
        out = np.empty((count, self.height, self.width, 3), np.uint8)
        # Only the margins come from the canvas; the content rectangle is overwritten anyway.
        out[:, :top] = self._canvas[:top]
        out[:, bottom:] = self._canvas[bottom:]
        out[:, top:bottom, :left] = self._canvas[top:bottom, :left]
        out[:, top:bottom, right:] = self._canvas[top:bottom, right:]
        shrinking = height < frame_height or width < frame_width
        crossings = [
            (overlay, window)
            for overlay in self._overlays
            if (window := overlay.clip(top, bottom, left, right))
        ]
        source = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        for start in range(0, count, SCALE_CHUNK):
            chunk = out[start : start + SCALE_CHUNK]
            # A channels-last uint8 tensor takes torch's vectorised uint8 path: no float copy.
            scaled = F.interpolate(
                source[start : start + SCALE_CHUNK],
                size=(height, width),
                mode="bilinear",
                align_corners=False,
                antialias=shrinking,
            )
            chunk[:, top:bottom, left:right] = scaled.permute(0, 2, 3, 1).numpy()
            # Blending while the chunk is still in cache.
            for overlay, window in crossings:
                overlay.blend(chunk, *window)
        return out


def _div255(value: np.ndarray) -> np.ndarray:
    """round(value / 255) for uint16 values up to 255², without a division."""
    value = value + 128
    return (value + (value >> 8)) >> 8


def _read_image(data: bytes, what: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        # Phone photos store their orientation in EXIF rather than in the pixels.
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadInput(
            f"the {what} could not be read ({len(data)} bytes): {error}; "
            "give a PNG, JPEG or WebP file"
        ) from None


def _colour(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def _background(colour: str, image_data: bytes | None, width: int, height: int) -> np.ndarray:
    rgb = _colour(colour)
    if image_data is None:
        return np.full((height, width, 3), rgb, np.uint8)
    image = _read_image(image_data, "background image")
    if image.mode != "RGB":
        # Transparent parts of the image show the background colour.
        flat = Image.new("RGBA", image.size, (*rgb, 255))
        image = Image.alpha_composite(flat, image.convert("RGBA"))
    cover = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
    return np.array(cover, np.uint8)


def _logo_overlay(
    data: bytes, spec: CompositeSpec, width: int, height: int, margin: int
) -> _Overlay:
    image = _read_image(data, "logo").convert("RGBA")
    target_width = min(round(spec.logo_scale * width), width - 2 * margin)
    # A tall logo is limited by the canvas height instead of its width.
    scale = min(target_width / image.width, (height - 2 * margin) / image.height)
    logo_width = max(1, round(image.width * scale))
    logo_height = max(1, round(image.height * scale))
    # Pillow resizes RGBA in premultiplied form, so edges do not get dark fringes.
    rgba = np.array(image.resize((logo_width, logo_height), Image.Resampling.LANCZOS))
    top = margin if spec.logo_placement.startswith("top") else height - margin - logo_height
    left = margin if spec.logo_placement.endswith("left") else width - margin - logo_width
    return _Overlay.from_rgba(rgba, top, left)


def _caption_overlay(
    text: str, spec: CompositeSpec, width: int, height: int, margin: int
) -> _Overlay | None:
    text = normalize_caption(text)
    if not text:
        return None
    font, lines, padding = _fit_caption(text, spec.caption_size, width - 2 * margin, height // 3)
    ascent, descent = font.getmetrics()
    line_height = ascent + descent
    text_width = max(round(font.getlength(line)) for line in lines)
    box_width = text_width + 2 * padding
    box_height = line_height * len(lines) + 2 * padding
    coverage = Image.new("L", (box_width, box_height), 0)
    draw = ImageDraw.Draw(coverage)
    for index, line in enumerate(lines):
        x = padding + (text_width - round(font.getlength(line))) // 2
        draw.text((x, padding + index * line_height), line, fill=255, font=font)
    # White text of coverage m over the black box, premultiplied: colour = m and
    # alpha = m + box·(1 − m).
    ink = np.array(coverage, np.uint16)[..., None]
    alpha = ink + _div255(CAPTION_BOX_ALPHA * (255 - ink))
    left = (width - box_width) // 2
    top = margin if spec.caption_position == "top" else height - margin - box_height
    return _Overlay(top, left, np.repeat(ink, 3, axis=2), 255 - alpha)


def _fit_caption(
    text: str, size: int, max_width: int, max_height: int
) -> tuple[ImageFont.FreeTypeFont, list[str], int]:
    """The largest font size ≤ ``size`` at which the wrapped caption fits the box limits.

    The font is the first caption font with a glyph for every character (BadInput if none).
    """
    face = caption_font(text)
    while True:
        font = face.load(size)
        padding = max(2, size // 3)
        room = max(1, max_width - 2 * padding)
        lines = _wrap(text, font, room)
        ascent, descent = font.getmetrics()
        fits = len(lines) <= CAPTION_MAX_LINES and (ascent + descent) * len(lines) <= max_height
        if fits or size <= MIN_CAPTION_SIZE:
            break
        size = max(MIN_CAPTION_SIZE, size - max(1, size // 8))
    if len(lines) > CAPTION_MAX_LINES:
        last = lines[CAPTION_MAX_LINES - 1]
        while last and font.getlength(last + "...") > room:
            last = last[:-1]
        lines = [*lines[: CAPTION_MAX_LINES - 1], last.rstrip() + "..."]
    return font, lines, padding


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    """Greedy word wrap; a word wider than the line is broken between characters."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= max_width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for character in word:
            if line and font.getlength(line + character) > max_width:
                lines.append(line)
                line = ""
            line += character
    if line:
        lines.append(line)
    return lines
