"""Reuse before scheduling: one task run resolves every stage output the cache already holds.

A warm run would otherwise start a task run per stage and segment (37 for the
demo) only to find each output in the cache. Each costs about 15 ms of
orchestration, and their state events reach the ephemeral API's SQLite after the
flow has returned, where they collide with the next flow run's creation (a 503
"database is locked" and a 2 s client back-off; bench/RESULTS.md). This task walks
each segment's chain as far as the cache reaches, then the assembly, writing the
same reuse record and floor event a stage task writes; the flow submits stage tasks
only for what is left. A miss is looked up again by its stage task (whose
single-flight lease needs a fresh look anyway), and a lookup that fails here is
treated as a miss.
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
from tasks.chain import FINAL, SEGMENT_CHAIN
from tasks.floor import floor_event
from tasks.prepare import Production
from tasks.provenance import RunContext
from tasks.resources import Resources
from tasks.runner import reuse_cached
from tasks.stage import Job

log = logging.getLogger("factory.cache")

# Lookups wait on the store more than on the CPU.
LOOKUP_THREADS = 8


class Reused(BaseModel):
    """The outputs taken from the cache: per segment, one per chain stage (None: must run)."""

    model_config = ConfigDict(frozen=True)

    segments: list[list[StageResult | None]]
    final: StageResult | None = None

    @classmethod
    def nothing(cls, segments: int) -> "Reused":
        """Nothing reused: every stage runs (cache off or refreshed)."""
        return cls(segments=[[None] * len(SEGMENT_CHAIN) for _ in range(segments)])

    @property
    def hits(self) -> int:
        found = [result for chain in self.segments for result in chain]
        return sum(result is not None for result in (*found, self.final))


def reuse_cached_stages(
    order: Order, resources: Resources, production: Production, context: RunContext
) -> Reused:
    """Every stage of ``order`` whose output the cache holds, each with its reuse record.

    Segments are looked up concurrently: on a remote store each hit is several round
    trips (entry, object, reuse record, run index, floor event), and hashing releases
    the GIL.
    """
    count = len(order.segments)

    def segment_chain(index: int) -> list[StageResult | None]:
        found: list[StageResult | None] = []
        upstream: list = []
        for spec in SEGMENT_CHAIN:
            result = _reuse(resources, spec.plan(order, production, index, upstream), context)
            if result is None:
                break
            found.append(result)
            upstream = [result]
        return found + [None] * (len(SEGMENT_CHAIN) - len(found))

    with ThreadPoolExecutor(max_workers=min(LOOKUP_THREADS, count)) as pool:
        # Each lookup runs in a copy of this task's context, so its floor event and
        # reuse record name this task run.
        futures = [
            pool.submit(contextvars.copy_context().run, segment_chain, i) for i in range(count)
        ]
        chains = [future.result() for future in futures]
    last = [chain[-1] for chain in chains]
    final = None
    if all(result is not None for result in last):
        final = _reuse(resources, FINAL.plan(order, production, None, last), context)
    return Reused(segments=chains, final=final)


def _reuse(resources: Resources, job: Job, context: RunContext) -> StageResult | None:
    # Reuse is an optimisation: a lookup that fails (the store hiccups, an entry cannot
    # be read) is a miss here, and the stage's own task looks again, with retries, and
    # accounts for its own attempts.
    try:
        result = reuse_cached(resources, job, context)
        if result is not None:
            # The same floor event the stage's own task would write for a hit.
            with floor_event(resources, context, job) as attempt:
                attempt.result = result
    except (FactoryError, OSError) as error:
        log.warning(
            "cache lookup for %s (segment %s) failed, its task will run: %s",
            job.stage.name,
            job.index,
            error,
        )
        return None
    return result


# No retries: a failed lookup is already a miss, and a retry would write every hit's
# reuse record and floor event a second time.
@task(name="reuse", cache_policy=NO_CACHE, persist_result=False)
def reuse_task(
    order: Order, resources: Resources, production: Production, context: RunContext
) -> Reused:
    reused = reuse_cached_stages(order, resources, production, context)
    get_run_logger().info("reused %d stage outputs from the cache", reused.hits)
    return reused
