"""The quality thresholds: a versioned TOML file read into a pydantic model.

The shipped file is ``quality/thresholds.toml``; a factory may point the judge at its
own. Its ``version`` goes into every verdict, so a verdict is only ever compared with
verdicts made under the same rules.
"""

import tomllib
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from factory.errors import BadInput, validation_problems

THRESHOLDS_PATH = Path(__file__).with_name("thresholds.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlackDetection(_Section):
    """ffmpeg blackdetect's pix_th and pic_th."""

    pixel_threshold: float = Field(ge=0, le=1)
    picture_ratio: float = Field(ge=0, le=1)


class FrozenDetection(_Section):
    """ffmpeg freezedetect's noise tolerance n."""

    noise: float = Field(ge=0, le=1)


class SegmentThresholds(_Section):
    duration_tolerance_s: float = Field(ge=0)
    luma_mean_max: float = Field(ge=0, le=255)
    luma_range_min: int = Field(ge=0, le=255)
    black_share_max: float = Field(ge=0, le=1)
    frozen_run_max_s: float = Field(gt=0)
    flicker_max: float = Field(ge=0, le=255)
    bits_per_pixel_min: float = Field(ge=0)
    bits_per_pixel_max: float = Field(gt=0)
    nonfinite_share_max: float = Field(ge=0, le=1)


class DeliverableThresholds(_Section):
    duration_tolerance_s: float = Field(ge=0)


class Thresholds(_Section):
    """Every threshold the metrics and suites use, and the version they go by."""

    version: str = Field(min_length=1, max_length=40)
    black: BlackDetection
    frozen: FrozenDetection
    segment: SegmentThresholds
    deliverable: DeliverableThresholds


def load_thresholds(path: Path | None = None) -> Thresholds:
    """The thresholds from ``path`` (default: the shipped ``quality/thresholds.toml``)."""
    if path is None:
        return _shipped()
    return _load(path)


@cache
def _shipped() -> Thresholds:
    return _load(THRESHOLDS_PATH)


def _load(path: Path) -> Thresholds:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"quality thresholds {path} do not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise BadInput(f"quality thresholds {path} cannot be read: {error}") from None
    try:
        return Thresholds.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(validation_problems(error, root="file", limit=5))
        raise BadInput(
            f"quality thresholds {path} are invalid: {problems}. See {THRESHOLDS_PATH} for "
            "the expected shape"
        ) from None
