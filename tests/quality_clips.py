"""Synthetic segments made to pass or to fail one quality expectation each.

Every clip is a diagonal gradient drifting a few code values per frame (busy enough to
code at a normal bitrate, never frozen, no flicker), encoded as the factory's encode stage
does (H.264 High, crf 23, veryfast) at a small size so the tests stay fast.
"""

import numpy as np

from media.video import concat_mp4, encode_h264

FPS = 12
WIDTH, HEIGHT = 160, 96
FRAMES = 48


def moving(count: int = FRAMES, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """(T,H,W,3) uint8: a gradient that moves every frame."""
    t = np.arange(count)[:, None, None]
    y = np.arange(height)[None, :, None]
    x = np.arange(width)[None, None, :]
    luma = (48 + (x + y + 3 * t) % 160).astype(np.uint8)
    return np.repeat(luma[..., None], 3, axis=3)


def encode(frames: np.ndarray, fps: int = FPS) -> bytes:
    return encode_h264(frames, fps, crf=23, preset="veryfast", fragmented=False)


def normal() -> bytes:
    return encode(moving())


def black(start: int = 12, stop: int = 30) -> bytes:
    frames = moving().copy()
    frames[start:stop] = 0
    return encode(frames)


def frozen(start: int = 10, stop: int = 40) -> bytes:
    frames = moving().copy()
    frames[start:stop] = frames[start]
    return encode(frames)


def flicker(jump: int = 80) -> bytes:
    frames = moving().astype(np.int16)
    frames[::2] += jump
    return encode(np.clip(frames, 0, 255).astype(np.uint8))


def grey_levels(levels: list[int]) -> bytes:
    """One flat grey frame per RGB level: luma just either side of blackdetect's threshold."""
    frames = np.stack([np.full((HEIGHT, WIDTH, 3), level, np.uint8) for level in levels])
    return encode(frames)


def darkening_rows(count: int = FRAMES) -> bytes:
    """Frame i has i/count of its rows black: the black share of a frame sweeps 0 to 1."""
    frames = moving(count).copy()
    for index in range(count):
        frames[index, : round(HEIGHT * index / (count - 1))] = 0
    return encode(frames)


def joined(*lengths: int) -> bytes:
    """A deliverable: one encode per segment length, joined by stream copy."""
    return concat_mp4([encode(moving(length)) for length in lengths], fragmented=False)
