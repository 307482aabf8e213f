"""Content Credentials cost: signing and verifying a 1-minute 640×360 H.264 MP4 vs encoding it.

    .venv/bin/python -m bench.c2pa_sign [--rounds 5] [--segments 12]

Frames are synthetic but codec-realistic (a smooth texture panning under a moving
gradient, with mild grain), 720 at 12 fps, encoded with the demo's crf 23 veryfast. Two
signing cases: the whole file as one render (no ingredients), and the deliverable as the
flow makes it, joined from signed segments that become its ingredients (each one's
manifest is validated, its media re-hashed and its store embedded). Ratios are sign ÷
the H.264 encode of the same frames, measured in the same run.
"""

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import emit, median, timed
from media.certificates import make_certificate_chain
from media.credential_reports import verify_credentials
from media.credentials import CredentialSigner, Ingredient
from media.video import concat_mp4, encode_h264

FPS = 12
CRF = 23
PRESET = "veryfast"
PROVENANCE = {"model": "tiny-wan", "record_digests": ["0" * 64], "royalty_bp": [7000, 3000]}


def synthetic_frames(count: int, height: int = 360, width: int = 640) -> np.ndarray:
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (height // 16 + 1, (width + 2 * count) // 16 + 1, 3))
    texture = np.repeat(np.repeat(tiles, 16, axis=0), 16, axis=1).astype(np.float32)
    texture = (texture + np.roll(texture, 8, axis=0) + np.roll(texture, 8, axis=1)) / 3
    ramp = np.linspace(0, 60, width, dtype=np.float32)
    frames = np.empty((count, height, width, 3), np.uint8)
    for t in range(count):
        gradient = np.roll(ramp, 4 * t)[None, :, None]
        grain = rng.normal(0, 3, (height, width, 1)).astype(np.float32)
        frame = texture[:height, 2 * t : 2 * t + width] * 0.75 + gradient + grain
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def encode(frames: np.ndarray) -> bytes:
    return encode_h264(frames, FPS, crf=CRF, preset=PRESET, fragmented=False)


def measure(rounds: int, function: Callable[[], Any]) -> tuple[float, Any]:
    """Median seconds over ``rounds`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(rounds):
        seconds, result = timed(function)
        times.append(seconds)
    return median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--segments", type=int, default=12)
    args = parser.parse_args()
    frames = synthetic_frames(60 * FPS)
    chain = make_certificate_chain("Bench Factory")
    anchors = [chain.root_cert_pem]
    signer = CredentialSigner(chain)

    encode_s, video = measure(args.rounds, lambda: encode(frames))
    sign_s, signed = measure(
        args.rounds,
        lambda: signer.sign(video, action="created", title="minute", provenance=PROVENANCE),
    )
    verify_s, reasons = measure(args.rounds, lambda: verify_credentials(signed, anchors))
    assert reasons == [], reasons

    parts = np.array_split(frames, args.segments)
    segments = [
        signer.sign(encode(part), action="created", title=f"segment-{index}", provenance=PROVENANCE)
        for index, part in enumerate(parts)
    ]
    joined = concat_mp4(segments, fragmented=False)
    ingredients = [
        Ingredient(data, f"segment-{i}", f"segment-{i}") for i, data in enumerate(segments)
    ]
    assemble_s, deliverable = measure(
        args.rounds,
        lambda: signer.sign(
            joined,
            action="assembled",
            title="deliverable",
            components=ingredients,
            provenance=PROVENANCE,
        ),
    )
    assembled_verify_s, reasons = measure(
        args.rounds, lambda: verify_credentials(deliverable, anchors)
    )
    assert reasons == [], reasons

    emit(
        "c2pa_sign",
        {
            "frames": int(frames.shape[0]),
            "size": f"{frames.shape[2]}x{frames.shape[1]}",
            "crf": CRF,
            "preset": PRESET,
            "alg": chain.alg,
            "mp4_bytes": len(video),
            "encode_s_median": round(encode_s, 4),
            "sign_s_median": round(sign_s, 4),
            "sign_over_encode": round(sign_s / encode_s, 5),
            "verify_s_median": round(verify_s, 4),
            "manifest_bytes": len(signed) - len(video),
            "deliverable": {
                "segments": args.segments,
                "ingredients_bytes": sum(map(len, segments)),
                "sign_s_median": round(assemble_s, 4),
                "sign_over_encode": round(assemble_s / encode_s, 5),
                "verify_s_median": round(assembled_verify_s, 4),
                "manifest_bytes": len(deliverable) - len(joined),
            },
            "rounds": args.rounds,
        },
    )


if __name__ == "__main__":
    main()
