"""Reuse before scheduling: one task run resolves every stage output the cache already holds.

A warm run would otherwise start a task run per stage and segment (37 for the
demo) only to find each output in the cache. Each costs about 15 ms of
orchestration, and their state events reach the ephemeral API's SQLite after the
flow has returned, where they collide with the next flow run's creation (a 503
"database is locked" and a 2 s client back-off; bench/RESULTS.md). This task walks
each segment's chain render → composite → encode as far as the cache reaches,
then the assembly, writing the same reuse record and floor event a stage task
writes; the flow submits stage tasks only for what is left. A miss is looked up
again by its stage task (whose single-flight lease needs a fresh look anyway), and
a lookup that fails here is treated as a miss.
"""

import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from factory.assets import StageResult
from factory.errors import FactoryError
from factory.orders import Order
from storage.objectstore import ObjectStore
from tasks.assemble import assemble_work
from tasks.cached import StageWork, reuse_cached
from tasks.composite import composite_work
from tasks.encode import encode_work
from tasks.floor import floor_event
from tasks.prepare import Production
from tasks.provenance import RunContext
from tasks.render import render_work

log = logging.getLogger("factory.cache")

# Lookups wait on the store more than on the CPU.
LOOKUP_THREADS = 8


class Reused(BaseModel):
    """The stage outputs taken from the cache, per segment; None where the stage must run."""

    model_config = ConfigDict(frozen=True)

    render: list[StageResult | None]
    composite: list[StageResult | None]
    encode: list[StageResult | None]
    assemble: StageResult | None = None

    @classmethod
    def nothing(cls, segments: int) -> "Reused":
        """Nothing reused: every stage runs (cache off or refreshed)."""
        return cls(render=[None] * segments, composite=[None] * segments, encode=[None] * segments)

    @property
    def hits(self) -> int:
        stages = (*self.render, *self.composite, *self.encode, self.assemble)
        return sum(result is not None for result in stages)


def reuse_cached_stages(order: Order, production: Production, context: RunContext) -> Reused:
    """Every stage of ``order`` whose output the cache holds, each with its reuse record.

    Segments are looked up concurrently: on a remote store each hit is several round
    trips (entry, object, reuse record, run index, floor event), and hashing releases
    the GIL.
    """
    store, count = production.store, len(order.segments)

    def segment_chain(index: int) -> list[StageResult | None]:
        segment = order.segments[index]
        model = production.models[segment.model]
        render = _reuse(store, render_work(segment, index, model), context, model.entry.name)
        if render is None:
            return [None, None, None]
        composite = _reuse(
            store,
            composite_work(
                render,
                segment,
                index,
                order.composite,
                order.caption_for(index),
                production.background,
                production.logo,
            ),
            context,
        )
        if composite is None:
            return [render, None, None]
        encode = _reuse(store, encode_work(composite, segment, index, order.encode), context)
        return [render, composite, encode]

    with ThreadPoolExecutor(max_workers=min(LOOKUP_THREADS, count)) as pool:
        # Each lookup runs in a copy of this task's context, so its floor event and
        # reuse record name this task run.
        futures = [
            pool.submit(contextvars.copy_context().run, segment_chain, i) for i in range(count)
        ]
        chains = [future.result() for future in futures]
    renders = [chain[0] for chain in chains]
    composites = [chain[1] for chain in chains]
    encodes = [chain[2] for chain in chains]
    assembled = None
    encoded = [result for result in encodes if result is not None]
    if len(encoded) == count:
        assembled = _reuse(
            store,
            assemble_work(encoded, fragmented=order.encode.fragmented),
            context,
            delivered_seconds=order.duration_s,
        )
    return Reused(render=renders, composite=composites, encode=encodes, assemble=assembled)


def _reuse(
    store: ObjectStore,
    work: StageWork,
    context: RunContext,
    model: str | None = None,
    delivered_seconds: float = 0.0,
) -> StageResult | None:
    # Reuse is an optimisation: a lookup that fails (the store hiccups, an entry cannot
    # be read) is a miss here, and the stage's own task looks again, with retries, and
    # accounts for its own attempts.
    try:
        result = reuse_cached(store, work, context)
        if result is not None:
            # The same floor event the stage's own task would write for a hit.
            with floor_event(store, context, work.stage, work.index, model) as attempt:
                attempt.bytes_in = sum(parent.asset.size for parent in work.parents)
                attempt.delivered_seconds = delivered_seconds
                attempt.result = result
    except (FactoryError, OSError) as error:
        log.warning(
            "cache lookup for %s (segment %s) failed, its task will run: %s",
            work.stage,
            work.index,
            error,
        )
        return None
    return result


# No retries: a failed lookup is already a miss, and a retry would write every hit's
# reuse record and floor event a second time.
@task(name="reuse", cache_policy=NO_CACHE)
def reuse_task(order: Order, production: Production, context: RunContext) -> Reused:
    reused = reuse_cached_stages(order, production, context)
    get_run_logger().info("reused %d stage outputs from the cache", reused.hits)
    return reused
