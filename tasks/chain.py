"""The chain as data: every segment runs the segment stages in order, then the assembly.

The stage names and their order are defined once, in ``factory.stages``; this maps
them to their declarations. The flow, the reuse pass and the benchmarks all walk
``SEGMENT_CHAIN`` and ``FINAL``.
"""

from typing import TypeVar

from factory.stages import SEGMENT_STAGES
from tasks.assemble import ASSEMBLE
from tasks.composite import COMPOSITE
from tasks.encode import ENCODE
from tasks.gate import GATE
from tasks.render import RENDER
from tasks.stage import StageSpec

_DECLARED = {spec.name: spec for spec in (RENDER, COMPOSITE, ENCODE, GATE)}

SEGMENT_CHAIN: tuple[StageSpec, ...] = tuple(_DECLARED[name] for name in SEGMENT_STAGES)
FINAL: StageSpec = ASSEMBLE

T = TypeVar("T")


def upstream_for(spec: StageSpec, outputs: list[T]) -> list[T]:
    """What a chain stage plans from, given this take's outputs so far: the output before
    it; the gate also reads the render's measurements of itself."""
    if spec is GATE:
        return [outputs[-1], outputs[0]]
    return outputs[-1:]
