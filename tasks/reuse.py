"""Reuse before scheduling: one task run resolves every stage output the cache already holds.

A warm run would otherwise start a task run per stage and segment (37 for the
demo) only to find each output in the cache. Each costs about 15 ms of
orchestration, and their state events reach the ephemeral API's SQLite after the
flow has returned, where they collide with the next flow run's creation (a 503
"database is locked" and a 2 s client back-off; bench/RESULTS.md). This task walks
each segment's chain (take by take, past cached rejections) as far as the cache
reaches, then the assembly, writing the
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
from tasks.chain import FINAL, SEGMENT_CHAIN, upstream_for
from tasks.floor import floor_event
from tasks.prepare import Production
from tasks.provenance import RunContext
from tasks.resources import Resources
from tasks.runner import reuse_cached
from tasks.stage import Job

log = logging.getLogger("factory.cache")

# Lookups wait on the store more than on the CPU.
LOOKUP_THREADS = 8


class SegmentReuse(BaseModel):
    """One segment's outputs found in the cache.

    ``chain`` holds take ``attempt``'s outputs in chain order, as far as the cache
    reached (complete with an accepted gate: the segment is done); ``earlier`` holds
    every output of the takes before it, each rejected by its gate.
    """

    model_config = ConfigDict(frozen=True)

    attempt: int = 1
    chain: list[StageResult] = []
    earlier: list[StageResult] = []

    @property
    def accepted(self) -> StageResult | None:
        if len(self.chain) < len(SEGMENT_CHAIN):
            return None
        gate = self.chain[-1]
        return gate if gate.verdict is not None and gate.verdict.passed else None


class Reused(BaseModel):
    """The outputs taken from the cache: per segment, and the assembly (None: must run)."""

    model_config = ConfigDict(frozen=True)

    segments: list[SegmentReuse]
    final: StageResult | None = None

    @classmethod
    def nothing(cls, segments: int) -> "Reused":
        """Nothing reused: every stage runs (cache off or refreshed)."""
        return cls(segments=[SegmentReuse() for _ in range(segments)])

    @property
    def hits(self) -> int:
        found = [len(segment.chain) + len(segment.earlier) for segment in self.segments]
        return sum(found) + (self.final is not None)


def reuse_cached_stages(
    order: Order, resources: Resources, production: Production, context: RunContext
) -> Reused:
    """Every stage of ``order`` whose output the cache holds, each with its reuse record.

    A segment's takes are walked in order: a take whose gate rejected it (a cached
    verdict is as good as a new one) leads to the next take. Segments are looked up
    concurrently: on a remote store each hit is several round trips (entry, object,
    reuse record, run index, floor event), and hashing releases the GIL.
    """
    count = len(order.segments)

    def take_chain(index: int, attempt: int) -> list[StageResult]:
        found: list[StageResult] = []
        for spec in SEGMENT_CHAIN:
            job = spec.plan(order, production, index, upstream_for(spec, found), attempt)
            result = _reuse(resources, job, context)
            if result is None:
                break
            found.append(result)
        return found

    def segment_takes(index: int) -> SegmentReuse:
        earlier: list[StageResult] = []
        attempt = 1
        while True:
            found = take_chain(index, attempt)
            taken = SegmentReuse(attempt=attempt, chain=found, earlier=earlier)
            complete = len(found) == len(SEGMENT_CHAIN)
            if not complete or taken.accepted is not None or attempt == order.attempts(index):
                return taken
            earlier = [*earlier, *found]
            attempt += 1

    with ThreadPoolExecutor(max_workers=min(LOOKUP_THREADS, count)) as pool:
        # Each lookup runs in a copy of this task's context, so its floor event and
        # reuse record name this task run.
        futures = [
            pool.submit(contextvars.copy_context().run, segment_takes, i) for i in range(count)
        ]
        segments = [future.result() for future in futures]
    accepted = [segment.accepted for segment in segments]
    final = None
    if all(result is not None for result in accepted):
        final = _reuse(resources, FINAL.plan(order, production, None, accepted), context)
    return Reused(segments=segments, final=final)


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
