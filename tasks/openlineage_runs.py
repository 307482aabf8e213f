"""OpenLineage events for the produce flow and every stage run, each a START and an end.

The stage runner's two ways to a stage's result, computing it and reusing a cached one,
are wrapped by ``lineage_of_stage``; the flow calls ``flow_started`` once its resources
are open and ``flow_completed`` with the delivery, and Prefect calls ``flow_failed`` (a
state hook) when the flow fails or crashes after it started. Everything here does nothing
when the resources carry no emitter (OpenLineage not configured).

Run ids are UUIDs: a flow run's is its Prefect flow run id; a stage run's is its Prefect
task run's id on the task's first attempt, else a UUID derived from that id, the stage,
segment and attempt (a retry is a new OpenLineage run, and the reuse pass's one task run
reuses many stages). Job names: ``produce`` and ``produce.<stage>``.
"""

import functools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

from prefect import Flow
from prefect.client.schemas.objects import FlowRun
from prefect.runtime import task_run
from prefect.states import State

from factory.assets import Delivery, StageResult
from factory.registry import ModelInfo
from storage.openlineage_config import LineageRun
from tasks.provenance import RunContext
from tasks.resources import Resources
from tasks.stage import Job

if TYPE_CHECKING:
    from storage.openlineage import OpenLineageEmitter

FLOW_JOB = "produce"
# Names the UUIDs of runs whose own ids are not UUIDs (a flow run id given by a test).
_RUN_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "https://asset-factory.dev/runs")

P = ParamSpec("P")
StageRun = Callable[Concatenate[Resources, Job, RunContext, P], StageResult]


def lineage_of_stage(run_stage: StageRun[P]) -> StageRun[P]:
    """``run_stage`` as one OpenLineage run: START, then COMPLETE with its output or FAIL."""

    @functools.wraps(run_stage)
    def emitting(
        resources: Resources, job: Job, context: RunContext, *args: P.args, **kwargs: P.kwargs
    ) -> StageResult:
        emitter = resources.openlineage
        if emitter is None:
            return run_stage(resources, job, context, *args, **kwargs)
        run = LineageRun(
            job=f"{FLOW_JOB}.{job.stage.name}", run_id=_stage_run_id(job), parent=_flow(context)
        )
        inputs = [parent.asset for parent in job.parents]
        emitter.stage_started(run, inputs)
        start = time.perf_counter()
        try:
            result = run_stage(resources, job, context, *args, **kwargs)
        except BaseException as error:
            device = resources.device_class if job.stage.on_accelerator else "cpu"
            elapsed = time.perf_counter() - start
            emitter.stage_failed(run, inputs, error, device, elapsed, job.models)
            raise
        emitter.stage_completed(run, inputs, result.asset, result.run, result.models)
        return result

    return emitting


@dataclass(frozen=True)
class _OpenFlow:
    emitter: "OpenLineageEmitter"
    run: LineageRun
    start: float


# Flow runs that sent START and no end yet, by Prefect flow run id: the failure hook gets
# the flow run from Prefect, not the resources the flow opened.
_open_flows: dict[str, _OpenFlow] = {}
_open_lock = threading.Lock()


def flow_started(resources: Resources, context: RunContext) -> None:
    """START of the flow run; its end is sent by ``flow_completed`` or ``flow_failed``."""
    emitter = resources.openlineage
    if emitter is None:
        return
    run = _flow(context)
    with _open_lock:
        _open_flows[context.flow_run_id] = _OpenFlow(emitter, run, time.perf_counter())
    emitter.flow_started(run)


def flow_completed(context: RunContext, delivery: Delivery, models: list[ModelInfo]) -> None:
    """COMPLETE of the flow run, with the deliverable and the run's stage costs summed."""
    with _open_lock:
        opened = _open_flows.pop(context.flow_run_id, None)
    if opened is None:
        return
    wall = time.perf_counter() - opened.start
    opened.emitter.flow_completed(opened.run, delivery.deliverable, delivery.runs, wall, models)


def flow_failed(flow: Flow, flow_run: FlowRun, state: State[Any]) -> None:
    """Prefect hook (on_failure, on_crashed): FAIL of a flow run that sent START."""
    with _open_lock:
        opened = _open_flows.pop(str(flow_run.id), None)
    if opened is None:
        return
    opened.emitter.flow_failed(opened.run, state.message or f"flow run {state.name}")


def _flow(context: RunContext) -> LineageRun:
    return LineageRun(job=FLOW_JOB, run_id=_as_uuid(context.flow_run_id))


def _stage_run_id(job: Job) -> str:
    task_id = task_run.id
    if not task_id:
        return str(uuid.uuid4())
    attempt = task_run.run_count or 1
    if attempt == 1 and task_run.task_name == job.stage.name:
        return _as_uuid(task_id)
    return str(uuid.uuid5(uuid.UUID(_as_uuid(task_id)), f"{job.stage.name}/{job.index}/{attempt}"))


def _as_uuid(run_id: str) -> str:
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(_RUN_IDS, run_id))
