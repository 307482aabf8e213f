"""The stages of the factory floor, named once.

Every segment runs the segment stages in this order, the gate last (it judges the
encoded segment); the assembly joins the accepted segments; ingest records an
order's input files.
"""

from typing import Literal, get_args

StageName = Literal["ingest", "render", "composite", "encode", "gate", "assemble"]

STAGES: tuple[StageName, ...] = get_args(StageName)
SEGMENT_STAGES: tuple[StageName, ...] = ("render", "composite", "encode", "gate")
CACHED_STAGES: tuple[StageName, ...] = (*SEGMENT_STAGES, "assemble")
