"""Caption fonts: every character of a caption is drawn with a real glyph, or refused.

Two fonts, tried in order, one per caption:

1. Pillow's built-in Aileron (basic layout): ASCII and a little punctuation. Captions it
   covers are drawn exactly as before this module existed, so their composites keep the
   same bytes.
2. DejaVu Sans (shipped in ``media/fonts``, Bitstream Vera licence): Latin with accents,
   Greek, Cyrillic, Arabic, Hebrew and many symbols. Captions with right-to-left letters,
   combining marks or invisible formatting characters are laid out with Pillow's raqm
   engine (FriBiDi for the order, HarfBuzz for shaping); all others with the basic layout,
   so they render to the same bytes whether or not raqm is installed.

A caption with a character neither font has a glyph for (CJK, for one) is refused before
anything runs, naming the characters; so is a right-to-left caption on a machine whose
Pillow has no raqm (it would come out unjoined and in the wrong order).
"""

import io
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import ImageFont, features

from factory.errors import BadInput, excerpt

FONTS_DIR = Path(__file__).with_name("fonts")
COVERED_SCRIPTS = "Latin, Greek, Cyrillic, Arabic and Hebrew"
_FONT_VERSIONS = {"DejaVuSans.ttf": "2.37"}
# A refused caption names at most this many of its characters.
_LISTED_CHARACTERS = 8


@dataclass(frozen=True)
class CaptionFont:
    """One caption font and the layout engine it is drawn with."""

    name: str
    shaped: bool = False

    @property
    def recipe(self) -> str | None:
        """What a composite's cache key must say about this font.

        None for Aileron, so composites made before DejaVu was added keep their keys (and
        are reused); the others name the font file and layout, so a caption drawn with
        boxes before is drawn again.
        """
        if self.name == "aileron":
            return None
        return f"{self.name} {_FONT_VERSIONS[self.name]}" + (" raqm" if self.shaped else "")

    def load(self, size: int) -> ImageFont.FreeTypeFont:
        """A new font object at ``size`` pixels (not shared: FreeType faces are not thread-safe)."""
        if self.name == "aileron":
            font = ImageFont.load_default(size=size)
            assert isinstance(font, ImageFont.FreeTypeFont)
            return font
        layout = ImageFont.Layout.RAQM if self.shaped else ImageFont.Layout.BASIC
        return ImageFont.truetype(str(FONTS_DIR / self.name), size, layout_engine=layout)


AILERON = CaptionFont("aileron")
DEJAVU = CaptionFont("DejaVuSans.ttf")
DEJAVU_SHAPED = CaptionFont("DejaVuSans.ttf", shaped=True)


def normalize_caption(text: str) -> str:
    """The caption as it is drawn: runs of whitespace become one space, ends trimmed."""
    return " ".join(text.split())


def caption_font(text: str) -> CaptionFont:
    """The font that draws every character of ``text``, or BadInput naming those it cannot."""
    text = normalize_caption(text)
    shaped = any(_needs_shaping(character) for character in text)
    if not shaped and _covers(_cmap("aileron"), text):
        return AILERON
    missing = [
        character
        for character in dict.fromkeys(text)
        if ord(character) not in _cmap(DEJAVU.name) and not _ignorable(character)
    ]
    if missing:
        shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in missing[:_LISTED_CHARACTERS])
        more = (
            f" and {len(missing) - _LISTED_CHARACTERS} more"
            if len(missing) > _LISTED_CHARACTERS
            else ""
        )
        raise BadInput(
            f"caption {excerpt(text, 60)} has characters no caption font can draw: "
            f"{shown}{more}. The caption fonts cover {COVERED_SCRIPTS} (not CJK or colour "
            "emoji): remove those characters or write the caption in one of these scripts"
        )
    if shaped and not features.check("raqm"):
        raise BadInput(
            f"caption {excerpt(text, 60)} needs right-to-left or combining-mark layout, and "
            "this Pillow has no raqm support (libfribidi is missing): install FriBiDi "
            "(Debian: apt-get install libfribidi0) or remove those characters"
        )
    return DEJAVU_SHAPED if shaped else DEJAVU


def check_captions(captions: list[str], limit: int = 10) -> None:
    """Refuse captions that cannot be drawn: one line per caption, at most ``limit`` lines."""
    problems = []
    for index, caption in enumerate(captions):
        try:
            caption_font(caption)
        except BadInput as error:
            problems.append(f"composite.captions.{index}: {error}")
    if problems:
        shown = problems[:limit]
        if len(problems) > limit:
            shown.append(f"… and {len(problems) - limit} more captions")
        raise BadInput("\n  ".join(["captions that cannot be drawn:", *shown]))


def _needs_shaping(character: str) -> bool:
    # Right-to-left letters need reordering (and Arabic joining); combining marks need
    # positioning; invisible format characters must not be drawn as boxes.
    return (
        unicodedata.bidirectional(character) in ("R", "AL", "AN")
        or unicodedata.category(character) in ("Mn", "Me")
        or _ignorable(character)
    )


def _ignorable(character: str) -> bool:
    """Default-ignorable characters (joiners, direction marks, variation selectors).

    HarfBuzz draws nothing for them when the font has no glyph, so they never need one.
    """
    code = ord(character)
    return (
        unicodedata.category(character) == "Cf"
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
        or code == 0x034F
    )


def _covers(cmap: frozenset[int], text: str) -> bool:
    return all(ord(character) in cmap for character in text)


@cache
def _cmap(name: str) -> frozenset[int]:
    """The code points a font maps to glyphs, from its cmap table."""
    from fontTools.ttLib import TTFont

    if name == "aileron":
        font = ImageFont.load_default(size=10)
        assert isinstance(font, ImageFont.FreeTypeFont)
        source: io.BytesIO | Path = io.BytesIO(font.font_bytes)
    else:
        source = FONTS_DIR / name
    with TTFont(source, lazy=True) as font_file:
        return frozenset(font_file.getBestCmap())
