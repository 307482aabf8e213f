"""Captions render every character or are refused (issue 10).

The rendering tests look at frames decoded from the composite stage's own output format
(lossless H.264 yuv420p), in the luma plane, not at the code path that drew them.
"""

import hashlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

import media.captions
from factory.errors import BadInput
from factory.orders import CompositeSpec
from media.captions import AILERON, DEJAVU, DEJAVU_SHAPED, caption_font, check_captions
from media.compositing import Compositor
from media.video import decode_yuv420, encode_lossless_yuv420, rgb_to_yuv420

W, H = 480, 120
# The caption box sits at the bottom: margin 4% of 120 px, box at most a third of the height.
BOX_ROWS = slice(H - H // 3 - 5, H)


def decoded_caption(text: str) -> np.ndarray:
    """The luma of the caption area, from a composite encoded as the composite stage does."""
    frames = np.zeros((1, 60, 240, 3), np.uint8)
    composed = Compositor(CompositeSpec(caption_size=24), W, H, text, None, None).compose(frames)
    video = encode_lossless_yuv420(rgb_to_yuv420(composed), 12)
    luma = decode_yuv420(video)[0, :H]
    return luma[BOX_ROWS].astype(np.int16)


def tofu(text: str, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """The same caption drawn as before issue 10: Pillow's default font for every text."""
    with monkeypatch.context() as patch:
        patch.setattr("media.compositing.caption_font", lambda _text: AILERON)
        return decoded_caption(text)


def ink(luma: np.ndarray) -> int:
    """Pixels of white text (the box is dark, the content black)."""
    return int((luma > 160).sum())


# Pairs of captions of one script, of equal length but different letters: boxes for
# missing glyphs would make the two renderings identical.
SAMPLES = {
    "latin accents": ("Café déjà vu", "Ñandú señor"),
    "greek": ("Καλημέρα κόσμε", "Ψηφιακό βίντεο"),
    "cyrillic": ("Привет, мир", "Доброе утро"),
    "arabic": ("مرحبا بالعالم", "صباح الخير يا"),
    "hebrew": ("שלום עולם", "בוקר טוב לך"),
}


@pytest.mark.parametrize("script", SAMPLES)
def test_non_ascii_captions_render_real_glyphs(script, monkeypatch):
    first, second = SAMPLES[script]
    drawn = decoded_caption(first)
    assert ink(drawn) > 150, "the caption has no visible text"
    # Different letters give different pictures (missing glyphs are all the same box) ...
    assert not np.array_equal(drawn, decoded_caption(second))
    # ... and the picture is not the one drawn with the old font's boxes.
    assert np.abs(drawn - tofu(first, monkeypatch)).max() > 100


def test_the_old_font_draws_boxes_for_the_samples(monkeypatch):
    # What the tests above guard against: before issue 10, equal-length captions in another
    # script came out as identical rows of boxes.
    assert np.array_equal(tofu("Καλημέρα", monkeypatch), tofu("Ψηφιακός", monkeypatch))


def _draw(font, text: str) -> np.ndarray:
    image = Image.new("L", (240, 40))
    ImageDraw.Draw(image).text((10, 5), text, fill=255, font=font)
    return np.array(image)


def test_hebrew_is_drawn_right_to_left():
    # Laid out right to left, "אבג" has the same pixels as "גבא" drawn left to right.
    assert np.array_equal(_draw(DEJAVU_SHAPED.load(24), "אבג"), _draw(DEJAVU.load(24), "גבא"))
    assert caption_font("אבג") == DEJAVU_SHAPED


def test_arabic_letters_are_joined():
    # Shaped: the contextual (joined) forms; not the isolated letters in reverse order.
    word = "سلام"
    shaped = _draw(DEJAVU_SHAPED.load(24), word)
    isolated = _draw(DEJAVU.load(24), word[::-1])
    assert ink(shaped) > 50
    assert not np.array_equal(shaped, isolated)


def test_ascii_captions_keep_their_bytes():
    # The project promises the same deliverable for the same order: captions the old font
    # covered are drawn with it, pixel for pixel (digest taken before issue 10).
    frames = np.random.default_rng(3).integers(0, 256, (2, 64, 128, 3), dtype=np.uint8)
    out = Compositor(CompositeSpec(), 640, 360, "A lighthouse at dusk", None, None).compose(frames)
    assert (
        hashlib.sha256(out.tobytes()).hexdigest()
        == "61f130552094f4045da7de85d4a08e353b72827865dfa8d1e93fbb35fd03756e"
    )
    assert caption_font("Lighthouse “at” dusk…") == AILERON
    assert caption_font("Café") == DEJAVU


@pytest.mark.parametrize(
    ("caption", "named"),
    [
        ("Tokyo 東京", "'東' (U+6771), '京' (U+4EAC)"),
        ("서울", "'서' (U+C11C)"),
        ("bell\x07", "'\\x07' (U+0007)"),
    ],
)
def test_characters_without_a_glyph_are_refused_by_name(caption, named):
    with pytest.raises(BadInput) as caught:
        check_captions(["fine", caption])
    message = str(caught.value)
    assert "composite.captions.1" in message
    assert named in message
    assert "Latin, Greek, Cyrillic, Arabic and Hebrew" in message


def test_refusal_lists_a_bounded_number_of_characters_and_captions():
    captions = ["漢字" * 500] * 30
    with pytest.raises(BadInput) as caught:
        check_captions(captions)
    message = str(caught.value)
    assert "… and 20 more captions" in message
    assert len(message) < 4000


def test_invisible_format_characters_need_no_glyph():
    # A zero-width non-joiner (Persian) and a right-to-left mark are laid out, not drawn.
    assert caption_font("می\u200cخواهم \u200f") == DEJAVU_SHAPED


def test_right_to_left_without_raqm_is_refused(monkeypatch):
    monkeypatch.setattr(media.captions.features, "check", lambda name: False)
    with pytest.raises(BadInput, match="raqm"):
        caption_font("שלום")
    # Left-to-right captions use the basic layout, so they need no raqm.
    assert caption_font("Привет") == DEJAVU


def test_only_captions_beyond_the_old_font_change_the_composite_recipe():
    # Cache keys hash the recipe: composites cached before issue 10 stay valid where their
    # bytes did not change (ASCII), and captions once drawn as boxes are drawn again.
    from factory.assets import AssetRef, Recorded
    from factory.orders import parse_order
    from tasks.composite import plan_composite
    from tasks.prepare import Production

    captions = ["Lighthouse", "Καλημέρα", "שלום", ""]
    order = parse_order(
        {
            "id": "o",
            "segments": [{"prompt": "p", "duration_s": 1}] * len(captions),
            "composite": {"captions": captions},
        }
    )
    asset = AssetRef(digest="0" * 64, uri="file:///x", key="x", media_type="video/mp4", size=1)
    render = Recorded(asset=asset, record_digest="1" * 64)
    production = Production(models={}, background=None, logo=None)
    fonts = [
        plan_composite(order, production, index, [render]).recipe.get("caption_font")
        for index in range(len(captions))
    ]
    assert fonts == [None, "DejaVuSans.ttf 2.37", "DejaVuSans.ttf 2.37 raqm", None]
