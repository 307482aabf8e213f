"""The order-to-deliverable flow: render → composite → encode per segment, then assemble."""

from datetime import UTC, datetime

from prefect import flow
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field

from factory.assets import AssetRef, RunRecord, StageResult
from factory.orders import Order
from factory.settings import Settings
from media.pipelines import default_task_workers
from storage.cache import CacheMode
from tasks.assemble import assemble_task
from tasks.composite import composite_task
from tasks.encode import encode_task
from tasks.floor import close_floor_books
from tasks.prepare import prepare
from tasks.provenance import RunContext
from tasks.render import render_task
from tasks.reuse import Reused, reuse_task

# A stage's output: reused by the reuse pass, or still to come from its task.
Staged = StageResult | PrefectFuture[StageResult]


class Delivery(BaseModel):
    """What a finished production returns to its caller (CLI, API client, UI)."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    flow_run_id: str
    deliverable: AssetRef
    record_digest: str = Field(description="SHA-256 of the deliverable's lineage record")
    duration_s: float = Field(description="Seconds of video delivered")
    store: str
    runs: list[RunRecord]

    @property
    def device_seconds(self) -> float:
        return sum(run.device_seconds for run in self.runs)


@flow(
    name="produce",
    task_runner=ThreadPoolTaskRunner(max_workers=Settings().task_workers or default_task_workers()),
    log_prints=True,
)
def produce(
    order: Order, store: str | None = None, cache: CacheMode = "use", floor: bool = True
) -> Delivery:
    """Turn an order into a signed H.264 deliverable in the object store.

    `store` is a directory or s3://bucket/prefix; unset means FACTORY_STORE or
    the local default under FACTORY_HOME. `cache`: "use" reuses identical earlier
    stage outputs, "off" computes everything without reading the cache, "refresh"
    recomputes everything and replaces the cache entries. `floor`: ingest the run's
    events into the factory-floor warehouse at the end and publish its summary.
    """
    started = datetime.now(UTC)
    context = RunContext(order_id=order.id, flow_run_id=str(flow_run.id))
    production = prepare(order, Settings(), store, context)
    reused = (
        reuse_task(order, production, context)
        if cache == "use"
        else Reused.nothing(len(order.segments))
    )
    # Stage tasks run only for what the reuse pass did not find; their inputs are
    # either its results or the futures of the stage tasks before them.
    rendered: list[Staged] = []
    composited: list[Staged] = []
    encoded: list[Staged] = []
    for index, segment in enumerate(order.segments):
        render = reused.render[index]
        if render is None:
            render = render_task.submit(
                production.store, segment, index, production.models[segment.model], context, cache
            )
        composite = reused.composite[index]
        if composite is None:
            composite = composite_task.submit(
                production.store,
                render,
                segment,
                index,
                order.composite,
                order.caption_for(index),
                context,
                production.background,
                production.logo,
                cache,
            )
        encode = reused.encode[index]
        if encode is None:
            encode = encode_task.submit(
                production.store, composite, segment, index, order.encode, context, cache
            )
        rendered.append(render)
        composited.append(composite)
        encoded.append(encode)
    assembled = reused.assemble
    if assembled is None:
        assembled = assemble_task(
            production.store,
            encoded,
            fragmented=order.encode.fragmented,
            context=context,
            cache=cache,
            delivered_seconds=order.duration_s,
        )
    runs = [_result(stage).run for stage in (*rendered, *composited, *encoded)]
    close_floor_books(production.store, context, started, ingest=floor)
    return Delivery(
        order_id=order.id,
        flow_run_id=context.flow_run_id,
        deliverable=assembled.asset,
        record_digest=assembled.record_digest,
        duration_s=order.duration_s,
        store=production.store.url,
        runs=[*runs, assembled.run],
    )


def _result(stage: Staged) -> StageResult:
    return stage if isinstance(stage, StageResult) else stage.result()
