"""Each declared stage as a Prefect task: plan the job, run it, leave a floor event.

The task's own name and run names are the stage's (``render``, ``render-3``, and
``render-3.2`` for a segment's second take), so the UI shows per-segment progress;
transient failures (the store went away) are retried.
"""

from collections.abc import Callable

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from factory.assets import StageResult
from factory.orders import Order
from storage.cache import CacheMode
from tasks.chain import FINAL, SEGMENT_CHAIN
from tasks.clock import TASK_RETRIES, is_transient
from tasks.floor import floor_event
from tasks.prepare import Production
from tasks.provenance import RunContext
from tasks.resources import Resources
from tasks.runner import run_stage
from tasks.stage import StageSpec


def _stage_task(spec: StageSpec) -> Task:
    def run(
        resources: Resources,
        order: Order,
        production: Production,
        context: RunContext,
        cache: CacheMode,
        index: int | None,
        upstream: list[StageResult],
        attempt: int = 1,
    ) -> StageResult:
        job = spec.plan(order, production, index, list(upstream), attempt)
        with floor_event(resources, context, job) as attempt:
            attempt.result = run_stage(resources, job, context, cache)
        return attempt.result

    # Prefect keys a task by its function's qualified name: one per stage.
    run.__qualname__ = f"{spec.name}_task"
    return task(
        run,
        name=spec.name,
        task_run_name=_run_name(spec),
        retries=TASK_RETRIES,
        retry_delay_seconds=2,
        retry_condition_fn=is_transient,
        cache_policy=NO_CACHE,
        # The flow's result is persisted; stage results are pointers to stored assets
        # already, and persisting them too would write one more object per task.
        persist_result=False,
    )


def _run_name(spec: StageSpec) -> Callable[[], str] | str:
    if spec is FINAL:
        return spec.name

    def name() -> str:
        # render-3 for a segment's first take, render-3.2 for its second, and so on.
        parameters = task_run.parameters
        attempt = parameters.get("attempt", 1)
        suffix = "" if attempt == 1 else f".{attempt}"
        return f"{spec.name}-{parameters['index']}{suffix}"

    return name


STAGE_TASKS: dict[str, Task] = {spec.name: _stage_task(spec) for spec in (*SEGMENT_CHAIN, FINAL)}
