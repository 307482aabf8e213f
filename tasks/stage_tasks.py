"""Each declared stage as a Prefect task: plan the job, run it, leave a floor event.

The task's own name and run names are the stage's (``render``, ``render-3``), so the
UI shows per-segment progress; transient failures (the store went away) are retried.
"""

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

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
    ) -> StageResult:
        job = spec.plan(order, production, index, list(upstream))
        with floor_event(resources, context, job) as attempt:
            attempt.result = run_stage(resources, job, context, cache)
        return attempt.result

    # Prefect keys a task by its function's qualified name: one per stage.
    run.__qualname__ = f"{spec.name}_task"
    return task(
        run,
        name=spec.name,
        task_run_name=f"{spec.name}-{{index}}" if spec is not FINAL else spec.name,
        retries=TASK_RETRIES,
        retry_delay_seconds=2,
        retry_condition_fn=is_transient,
        cache_policy=NO_CACHE,
        # The flow's result is persisted; stage results are pointers to stored assets
        # already, and persisting them too would write one more object per task.
        persist_result=False,
    )


STAGE_TASKS: dict[str, Task] = {spec.name: _stage_task(spec) for spec in (*SEGMENT_CHAIN, FINAL)}
