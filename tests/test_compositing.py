import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from factory.errors import BadInput
from factory.orders import CompositeSpec
from media.compositing import CAPTION_BOX_ALPHA, Compositor

BACKGROUND = (0x10, 0x14, 0x18)
CONTENT = (200, 100, 50)
W, H = 320, 180


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def flat_frames(count: int, height: int, width: int, colour=CONTENT) -> np.ndarray:
    return np.full((count, height, width, 3), colour, np.uint8)


def compositor(
    caption: str = "",
    background: bytes | None = None,
    logo: bytes | None = None,
    width: int = W,
    height: int = H,
    **spec: object,
) -> Compositor:
    return Compositor(CompositeSpec(**spec), width, height, caption, background, logo)


def changed_box(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), exclusive ends, of the pixels where two frames differ."""
    rows, cols = np.nonzero((a != b).any(axis=-1))
    assert rows.size, "nothing changed"
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_wide_frames_are_letterboxed_and_centred() -> None:
    out = compositor().compose(flat_frames(3, 32, 64))
    assert out.shape == (3, H, W, 3)
    assert out.dtype == np.uint8
    # 64×32 scaled by 5 is 320×160: 10 rows of canvas above and below.
    assert (out[:, 10:170] == CONTENT).all()
    assert (out[:, :10] == BACKGROUND).all()
    assert (out[:, 170:] == BACKGROUND).all()


def test_tall_frames_are_pillarboxed_and_centred() -> None:
    out = compositor().compose(flat_frames(2, 64, 64))
    assert (out[:, :, 70:250] == CONTENT).all()
    assert (out[:, :, :70] == BACKGROUND).all()
    assert (out[:, :, 250:] == BACKGROUND).all()


def test_content_keeps_its_layout_when_scaled() -> None:
    frames = flat_frames(1, 32, 64)
    frames[:, :, 32:] = (0, 0, 255)
    frames[:, 16:, :] //= 2
    out = compositor().compose(frames)[0].astype(int)
    # Each quadrant of the source lands in the same quadrant of the content box.
    assert (out[20:80, 10:150] == CONTENT).all()
    assert (out[20:80, 170:310] == (0, 0, 255)).all()
    assert (out[100:160, 10:150] == np.array(CONTENT) // 2).all()
    assert (out[100:160, 170:310] == (0, 0, 127)).all()


def test_downscaling_works_too() -> None:
    out = compositor().compose(flat_frames(2, 720, 1280))
    assert (out[:, :, :] == CONTENT).all()


def test_background_image_covers_and_is_centre_cropped() -> None:
    stripes = Image.new("RGB", (300, 100), (255, 0, 0))
    stripes.paste((0, 255, 0), (100, 0, 200, 100))
    stripes.paste((0, 0, 255), (200, 0, 300, 100))
    # Scaled ×1.8 to cover 180 rows: 540 wide, cropped by 110 on each side.
    out = compositor(background=png(stripes)).compose(flat_frames(1, 16, 64))[0]
    assert (out[:10, :60] == (255, 0, 0)).all()
    assert (out[:10, 80:240] == (0, 255, 0)).all()
    assert (out[:10, 260:] == (0, 0, 255)).all()


def test_transparent_background_image_shows_the_background_colour() -> None:
    image = Image.new("RGBA", (64, 36), (0, 0, 0, 0))
    out = compositor(background=png(image), background_color="#336699").compose(
        flat_frames(1, 16, 64)
    )
    assert (out[0, :10] == (0x33, 0x66, 0x99)).all()


@pytest.mark.parametrize("position", ["bottom", "top"])
def test_caption_is_drawn_only_in_its_box(position: str) -> None:
    frames = flat_frames(2, 32, 64)
    plain = compositor().compose(frames)
    captioned = compositor("Hello caption", caption_position=position).compose(frames)
    top, bottom, left, right = changed_box(plain[0], captioned[0])
    if position == "bottom":
        assert top > H // 2 and bottom <= H - 2
    else:
        assert top >= 2 and bottom < H // 2
    assert abs(left - (W - right)) <= 1, "caption box is centred"
    box = captioned[:, top:bottom, left:right]
    assert (box >= 240).all(axis=-1).sum() > 50, "white text inside the box"
    outside = np.ones((H, W), bool)
    outside[top:bottom, left:right] = False
    assert np.array_equal(captioned[:, outside], plain[:, outside])


def test_caption_box_blends_exactly_over_content_and_canvas() -> None:
    # Bottom caption over 64×32 content: the box straddles the content and the margin.
    frames = flat_frames(1, 32, 64)
    plain = compositor().compose(frames)[0].astype(int)
    out = compositor("x", caption_size=40).compose(frames)[0].astype(int)
    top, bottom, left, _ = changed_box(plain, out)
    assert top < 170 < bottom, "the box crosses the content's lower edge"
    transparency = 255 - CAPTION_BOX_ALPHA
    for row in (top, bottom - 1):  # padding rows hold no text: only the dark box
        expected = (plain[row, left] * transparency + 127) // 255
        assert (out[row, left] == expected).all()


def test_long_captions_wrap_and_shrink_to_fit() -> None:
    frames = flat_frames(1, 32, 64)
    plain = compositor().compose(frames)[0]
    text = "a rather long caption " * 12 + "Pneumonoultramicroscopicsilicovolcanoconiosis" * 3
    out = compositor(text, caption_size=48).compose(frames)[0]
    top, bottom, left, right = changed_box(plain, out)
    assert left >= 2 and right <= W - 2
    assert bottom - top <= H // 3 + 40


def test_blank_caption_draws_nothing() -> None:
    frames = flat_frames(1, 32, 64)
    assert np.array_equal(compositor("  \n ").compose(frames), compositor().compose(frames))


def logo_png() -> bytes:
    image = Image.new("RGBA", (100, 50), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((0, 0, 99, 49), fill=(255, 0, 255, 255))
    return png(image)


@pytest.mark.parametrize("placement", ["top-left", "top-right", "bottom-left", "bottom-right"])
def test_logo_sits_in_its_corner_at_its_scale(placement: str) -> None:
    frames = flat_frames(1, 32, 64)
    plain = compositor().compose(frames)[0]
    out = compositor(logo=logo_png(), logo_placement=placement, logo_scale=0.25).compose(frames)[0]
    top, bottom, left, right = changed_box(plain, out)
    assert (right - left, bottom - top) == (80, 40)
    margin = round(min(W, H) * 0.04)
    assert top == (margin if placement.startswith("top") else H - margin - 40)
    assert left == (margin if placement.endswith("left") else W - margin - 80)
    assert (out[top + 5 : bottom - 5, left + 5 : right - 5] == (255, 0, 255)).all()


def test_transparent_logo_pixels_leave_the_picture_alone() -> None:
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((30, 30, 70, 70), fill=(255, 255, 255, 255))
    frames = flat_frames(1, 32, 64)
    plain = compositor().compose(frames)[0]
    out = compositor(logo=png(image), logo_scale=0.5).compose(frames)[0]
    top, bottom, left, right = changed_box(plain, out)
    # Only the circle in the middle of the 160×160 logo shows.
    assert 40 <= bottom - top <= 75 and 40 <= right - left <= 75


@pytest.mark.parametrize("which", ["background", "logo"])
@pytest.mark.parametrize(
    "data", [b"", b"definitely not an image", png(Image.new("RGB", (40, 40)))[:60]]
)
def test_unreadable_images_name_the_image(which: str, data: bytes) -> None:
    arguments = {"background": data} if which == "background" else {"logo": data}
    with pytest.raises(BadInput, match=f"the {which}.* could not be read"):
        compositor(**arguments)


def test_bad_frames_are_refused() -> None:
    with pytest.raises(BadInput, match="uint8"):
        compositor().compose(np.zeros((1, 16, 16, 3), np.float32))


def test_output_is_deterministic_across_instances_and_thread_counts() -> None:
    frames = np.random.default_rng(3).integers(0, 256, (5, 64, 128, 3), dtype=np.uint8)
    logo = logo_png()
    first = compositor("Same every time", logo=logo, width=640, height=360).compose(frames)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        again = compositor("Same every time", logo=logo, width=640, height=360).compose(frames)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(first, again)


def test_full_size_segment() -> None:
    frames = np.random.default_rng(4).integers(0, 256, (24, 64, 128, 3), dtype=np.uint8)
    comp = compositor("A fox in the snow", logo=logo_png(), width=640, height=360)
    out = comp.compose(frames)
    assert out.shape == (24, 360, 640, 3)
    assert comp.content_box(64, 128) == (20, 0, 320, 640)
    assert (out[:, :20, 100:500] == BACKGROUND).all()
    # Frames stay distinct: each output frame comes from its own input frame.
    assert not np.array_equal(out[0, 100:200], out[1, 100:200])
