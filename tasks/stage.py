"""What a stage is: a declaration, and the job it plans for one segment of one order.

A stage declares its name and version, its output media type and C2PA action, how
it plans a job (the recipe: everything that determines its output, plus its inputs),
and a pure compute function from the recipe and the inputs' bytes to the output's
bytes. The stage runner (``tasks.runner``) does everything else, alike for every stage.
"""

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import JsonValue

from factory.assets import Recorded
from factory.orders import Order
from factory.registry import ModelInfo, ResolvedModel
from factory.stages import StageName
from factory.verdicts import Verdict
from media.credentials import Action
from storage.cache import cache_key
from tasks.prepare import Production


@dataclass(frozen=True)
class Input:
    """A parent asset of a job: the C2PA ingredient ``label`` also keys its bytes in compute."""

    recorded: Recorded
    label: str
    title: str
    role: Literal["parent", "component"] = "component"


@dataclass(frozen=True)
class Job:
    """One stage's work for one segment (or the whole order), before it runs.

    ``recipe`` makes the cache key and is all that compute may read besides the
    inputs' bytes and the model's weights; ``parameters`` is what the lineage record
    shows (the recipe plus, say, the segment index, which must not change the key).
    """

    stage: "StageSpec"
    index: int | None
    title: str
    recipe: dict[str, JsonValue]
    parameters: dict[str, JsonValue]
    inputs: tuple[Input, ...] = ()
    model: ResolvedModel | None = None
    delivered_seconds: float = 0.0
    assertions: Mapping[str, dict[str, JsonValue]] = field(default_factory=dict)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        recipe = {"stage": self.stage.name, "version": self.stage.version, **self.recipe}
        object.__setattr__(self, "key", cache_key(recipe))

    @property
    def parents(self) -> list[Recorded]:
        return [item.recorded for item in self.inputs]

    @property
    def models(self) -> list[ModelInfo]:
        """The models in this output's ancestry: its own, or its parents' in first-seen order."""
        if self.model is not None:
            return [self.model.info]
        found: dict[tuple[str, str], ModelInfo] = {}
        for parent in self.parents:
            for model in parent.models:
                found.setdefault((model.name, model.weights_fingerprint), model)
        return list(found.values())


class DeviceTimer(Protocol):
    """How a compute accounts its device time (``tasks.clock.DeviceTime``)."""

    def __call__(self) -> AbstractContextManager[None]:
        """Brackets the part of the compute that occupies the device."""
        ...

    def charge(self, seconds: float) -> None:
        """Adds this run's share of device work done once for several runs."""
        ...


@dataclass(frozen=True)
class Output:
    """A compute's output when it is more than bytes: a judgement, or measurements of itself."""

    data: bytes
    verdict: Verdict | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class Compute(Protocol):
    def __call__(
        self, job: Job, inputs: Mapping[str, bytes], device: DeviceTimer
    ) -> bytes | Output:
        """The output's bytes; ``device()`` brackets the part that occupies the device."""
        ...


class Planner(Protocol):
    def __call__(
        self,
        order: Order,
        production: Production,
        index: int | None,
        upstream: list[Recorded],
        attempt: int = 1,
    ) -> Job:
        """The job for segment ``index`` (None: the whole order) given the stages before it.

        ``attempt`` is which take of the segment this is (``Segment.take``): the render
        draws its model and seed from it, the gate records it; other stages ignore it.
        """
        ...


@dataclass(frozen=True)
class StageSpec:
    """A stage's declaration; ``on_accelerator`` stages run on the GPU when there is one."""

    name: StageName
    version: str
    media_type: str
    action: Action
    plan: Planner
    compute: Compute
    on_accelerator: bool = False
