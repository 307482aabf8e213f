"""The stages of the factory floor, named once.

Every segment runs the segment stages in this order; the assembly joins the
segments; ingest records an order's input files; the gate judges quality.
"""

from typing import Literal, get_args

StageName = Literal["ingest", "render", "composite", "encode", "gate", "assemble"]

STAGES: tuple[StageName, ...] = get_args(StageName)
SEGMENT_STAGES: tuple[StageName, ...] = ("render", "composite", "encode")
CACHED_STAGES: tuple[StageName, ...] = (*SEGMENT_STAGES, "assemble")
