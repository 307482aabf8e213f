"""Orders: what a customer asks the factory to produce.

An ``Order`` is the boundary of the system: everything in it is validated here,
with errors that name the field, the value and the allowed range, so nothing
downstream has to re-check it.
"""

import json
import re
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from factory.errors import BadInput, shorten, validation_problems

MAX_WIDTH = 3840
MAX_HEIGHT = 2160
MIN_SIDE = 64

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
Placement = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")

# An input image (logo, background) is named by one of: a store digest, as `factory assets
# put` prints it; an s3:// or file:// URI; an absolute path on the host that runs the order.
# A relative path means nothing to a server (it would resolve against the serving process's
# directory), so only order files resolve them (beside the file) before validation.
IMAGE_REF_PATTERN = (
    r"^(sha256:[0-9a-f]{64}|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+|file:///.+|/.+)$"
)
_IMAGE_REF = re.compile(IMAGE_REF_PATTERN)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_URL_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
ImageRefKind = Literal["digest", "s3", "file", "path"]
_IMAGE_REF_HELP = (
    "give a store digest (sha256:<64 hex>, as `factory assets put FILE` prints it), an "
    "s3://bucket/key or file:///path URI, or an absolute path on the host that runs the order"
)

# An order file is read whole and parsed in memory: 500 segments with long prompts fit
# in a fraction of this, and anything larger is refused before it is parsed.
MAX_ORDER_BYTES = 1024 * 1024
# A refused order lists at most this many problems, then says how many more there were.
MAX_LISTED_PROBLEMS = 20


def _not_a_boolean(value: object) -> object:
    # pydantic's lax mode reads true as 1: `fps: true` would quietly become 1 fps.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


NotBoolean = BeforeValidator(_not_a_boolean)


def image_ref_kind(value: str) -> ImageRefKind:
    """What an image reference names: a store digest, an S3 object, a file URI or a path."""
    if value.startswith("sha256:"):
        return "digest"
    if value.startswith("s3://"):
        return "s3"
    if value.startswith("file://"):
        return "file"
    return "path"


def _check_image_ref(value: str | None) -> str | None:
    if value is None or _IMAGE_REF.match(value):
        return value
    if value.startswith("sha256:") and not _DIGEST.match(value):
        raise ValueError(
            "is not a store digest: write sha256: and 64 lowercase hex digits, as "
            "`factory assets put FILE` prints them"
        )
    if _URL_LIKE.match(value):
        raise ValueError(f"is a URI the factory cannot read; {_IMAGE_REF_HELP}")
    raise ValueError(
        "is a relative path, which has no meaning to the process that runs the order; "
        + _IMAGE_REF_HELP
    )


# The pattern also goes into the JSON schema, so Prefect refuses a bad reference when a
# flow run is created through the API, not when it starts.
ImageRef = Annotated[
    str | None,
    AfterValidator(_check_image_ref),
    Field(json_schema_extra={"pattern": IMAGE_REF_PATTERN}),
]


class Take(NamedTuple):
    """One attempt at a segment: its number, and the model and seed it renders with."""

    attempt: int
    model: str
    seed: int


class Segment(BaseModel):
    """One continuous shot rendered by one model call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(min_length=1, max_length=2000, description="What the segment shows")
    negative_prompt: str = Field(default="", max_length=2000, description="What to avoid")
    seed: Annotated[int, NotBoolean] = Field(
        default=0, ge=0, le=2**63 - 1, description="Generator seed"
    )
    duration_s: Annotated[float, NotBoolean] = Field(
        gt=0, le=60, description="Length in seconds (0 < d ≤ 60)"
    )
    fps: Annotated[int, NotBoolean] = Field(
        default=12, ge=1, le=60, description="Frames per second (1 to 60)"
    )
    width: Annotated[int, NotBoolean] = Field(
        default=640,
        ge=MIN_SIDE,
        le=MAX_WIDTH,
        description=f"Output width, even, {MIN_SIDE}–{MAX_WIDTH}",
        json_schema_extra={"multipleOf": 2},
    )
    height: Annotated[int, NotBoolean] = Field(
        default=360,
        ge=MIN_SIDE,
        le=MAX_HEIGHT,
        description=f"Output height, even, {MIN_SIDE}–{MAX_HEIGHT}",
        json_schema_extra={"multipleOf": 2},
    )
    model: str = Field(
        default="tiny", min_length=1, max_length=100, description="A name from the model registry"
    )
    escalation: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list,
        max_length=5,
        description="Models to try next, cheapest first, when every attempt with the one "
        "before fails the quality gate",
    )
    steps: Annotated[int | None, NotBoolean] = Field(
        default=None, ge=1, le=200, description="Denoising steps (1 to 200); model default if unset"
    )
    guidance: Annotated[float, NotBoolean] = Field(
        default=1.0, ge=0, le=30, description="Classifier-free guidance 0–30"
    )

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even (H.264 yuv420p halves the chroma planes)")
        return value

    @field_validator("escalation")
    @classmethod
    def _distinct_rungs(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("names a model twice; each rung of the ladder is a different model")
        return value

    @property
    def ladder(self) -> list[str]:
        """The models this segment may end on, in the order they are tried."""
        return [self.model, *(name for name in self.escalation if name != self.model)]

    def take(self, attempt: int, attempts_per_model: int) -> "Take":
        """What attempt ``attempt`` (1-based, across the ladder) renders with.

        Each model gets ``attempts_per_model`` renders, seed, seed + 1, …; the next model
        starts again from the order's seed, so its first take is comparable.
        """
        rung, offset = divmod(attempt - 1, attempts_per_model)
        if attempt < 1 or rung >= len(self.ladder):
            raise ValueError(
                f"attempt {attempt} is outside 1..{attempts_per_model * len(self.ladder)}"
            )
        return Take(attempt=attempt, model=self.ladder[rung], seed=(self.seed + offset) % 2**63)

    @property
    def frame_count(self) -> int:
        """Frames this segment delivers: duration × fps, rounded to the nearest frame."""
        return max(1, round(self.duration_s * self.fps))


class CompositeSpec(BaseModel):
    """How rendered frames are laid onto the output canvas."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    background_color: str = Field(default="#101418", description="Canvas colour, #RRGGBB")
    background_image: ImageRef = Field(
        default=None,
        description="Image for the canvas (scaled to cover; overrides colour): a store digest "
        "(sha256:…), an s3:// or file:// URI, or an absolute path",
    )
    captions: list[str] = Field(
        default_factory=list,
        description="Caption per segment, in segment order; empty string for none",
    )
    caption_position: Literal["top", "bottom"] = "bottom"
    caption_size: Annotated[int, NotBoolean] = Field(
        default=24, ge=8, le=200, description="Caption font size in pixels"
    )
    logo: ImageRef = Field(
        default=None,
        description="Logo image (PNG with alpha works best): a store digest (sha256:…), an "
        "s3:// or file:// URI, or an absolute path",
    )
    logo_placement: Placement = "top-right"
    logo_scale: Annotated[float, NotBoolean] = Field(
        default=0.12, gt=0, le=1, description="Logo width as a fraction of output width"
    )

    @field_validator("background_color")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not _HEX_COLOUR.match(value):
            raise ValueError(f"must be a colour like #1a2b3c, got {value!r}")
        return value.lower()


class EncodeSpec(BaseModel):
    """H.264 settings shared by every segment of one deliverable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    crf: Annotated[int, NotBoolean] = Field(
        default=23, ge=0, le=51, description="x264 constant rate factor (0 to 51)"
    )
    preset: Literal[X264_PRESETS] = Field(default="veryfast", description="x264 preset")  # type: ignore[valid-type]
    fragmented: StrictBool = Field(
        default=False, description="Write fragmented MP4 (for streaming)"
    )


class QualitySpec(BaseModel):
    """How hard the quality gate tries before an order fails."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: Annotated[int, NotBoolean] = Field(
        default=2,
        ge=1,
        le=10,
        description="Renders per model (seed, seed + 1, …) before a segment escalates or fails",
    )


class Order(BaseModel):
    """A request for one video deliverable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Order id: letters, digits, '.', '_' or '-', at most 64 characters",
    )
    title: str = Field(default="", max_length=200)
    segments: list[Segment] = Field(min_length=1, max_length=500)
    composite: CompositeSpec = CompositeSpec()
    encode: EncodeSpec = EncodeSpec()
    quality: QualitySpec = QualitySpec()

    @model_validator(mode="after")
    def _segments_agree(self) -> "Order":
        # Stream-copy assembly needs one resolution and frame rate for the whole deliverable.
        first = self.segments[0]
        for index, segment in enumerate(self.segments[1:], start=1):
            for field in ("width", "height", "fps"):
                if getattr(segment, field) != getattr(first, field):
                    raise ValueError(
                        f"segments.{index}.{field} is {getattr(segment, field)} but segment 0 has "
                        f"{getattr(first, field)}: all segments of one deliverable share width, "
                        "height and fps"
                    )
        captions = self.composite.captions
        if captions and len(captions) != len(self.segments):
            raise ValueError(
                f"composite.captions has {len(captions)} entries for {len(self.segments)} "
                "segments: give one caption per segment (an empty string for none)"
            )
        return self

    def attempts(self, index: int) -> int:
        """How many attempts segment ``index`` may take before the order fails."""
        return self.quality.attempts * len(self.segments[index].ladder)

    @property
    def duration_s(self) -> float:
        return sum(s.frame_count / s.fps for s in self.segments)

    def caption_for(self, index: int) -> str:
        return self.composite.captions[index] if self.composite.captions else ""


def describe_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: the field's path, what is wrong, and an excerpt of the value given.

    At most ``MAX_LISTED_PROBLEMS`` lines, then one that says how many more there were.
    """
    problems = validation_problems(
        error, root="(order)", limit=MAX_LISTED_PROBLEMS, show_input=True
    )
    if error.error_count() > len(problems):
        problems.append(f"… and {error.error_count() - len(problems)} more problems")
    return "\n".join([f"invalid order in {source}:", *(f"  {line}" for line in problems)])


def parse_order(data: object, source: str = "order") -> Order:
    """Validate already-parsed data as an Order, or raise BadInput naming each problem."""
    try:
        return Order.model_validate(data)
    except ValidationError as error:
        raise BadInput(describe_validation_error(error, source)) from None


class _AliasRefused(yaml.MarkedYAMLError):
    """An alias (``*name``) or merge key in an order: refused, never expanded."""


class _OrderLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases.

    Nested aliases let a few hundred bytes stand for billions of values ("billion
    laughs"): validating, or echoing, the expanded order then takes minutes and gigabytes.
    An order has nothing to repeat that is worth that risk, so the first alias is refused
    before anything is built from it.
    """

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasRefused(
                problem=f"the alias *{shorten(str(event.anchor), 40)}",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)


def _read_order_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_ORDER_BYTES + 1)
    except FileNotFoundError:
        raise BadInput(
            f"order file {path} does not exist; see examples/ for valid orders"
        ) from None
    except OSError as error:
        raise BadInput(f"cannot read order file {path}: {error.strerror or error}") from None
    if len(raw) > MAX_ORDER_BYTES:
        raise BadInput(
            f"order file {path} is larger than {MAX_ORDER_BYTES // 1024} KiB, the limit for "
            "an order; split it into several orders"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadInput(
            f"order file {path} is not UTF-8 text (byte {error.start}); save it as UTF-8"
        ) from None


def _parse_order_text(text: str, path: Path) -> object:
    kind = path.suffix[1:] or "YAML"
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=_OrderLoader)  # a safe loader, without aliases
    except _AliasRefused as error:
        mark = error.problem_mark
        raise BadInput(
            f"order file {path} uses {error.problem} at line {mark.line + 1}, column "
            f"{mark.column + 1}; YAML aliases and merge keys (<<) are not allowed in orders: "
            "write the values out"
        ) from None
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise BadInput(
            f"order file {path} is not valid {kind}: {shorten(str(error), 600)}"
        ) from None
    except RecursionError:
        raise BadInput(
            f"order file {path} nests lists or mappings too deeply to be an order"
        ) from None


def load_order(path: Path | str) -> Order:
    """Read an order from a .yaml/.yml/.json file; relative image paths resolve beside it
    (digests and URIs are kept as they are).

    The file may be at most ``MAX_ORDER_BYTES`` long, and YAML aliases are refused.
    """
    path = Path(path)
    data = _parse_order_text(_read_order_text(path), path)
    if not isinstance(data, dict):
        raise BadInput(
            f"order file {path} must hold a mapping with id, title, segments, composite and "
            f"encode; it holds {type(data).__name__}"
        )
    composite = data.get("composite")
    if isinstance(composite, dict):
        for field in ("background_image", "logo"):
            value = composite.get(field)
            if (
                isinstance(value, str)
                and image_ref_kind(value) == "path"
                and not _URL_LIKE.match(value)
            ):
                composite[field] = str((path.parent / Path(value).expanduser()).resolve())
    return parse_order(data, str(path))
