"""The order-to-deliverable flow: each segment through the chain until its gate accepts
it, then the assembly of the accepted segments."""

from datetime import UTC, datetime

from prefect import Flow, flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from factory.assets import Delivery
from factory.errors import QualityRejected
from factory.orders import Order
from factory.settings import Settings, StoreTimeouts
from flows.crashed_runs import claim_run
from flows.takes import run_takes
from media.devices import device_class
from storage.cache import CacheMode
from storage.inputs import InputSource
from storage.open import open_store
from tasks.chain import FINAL
from tasks.delivery import publish_delivery
from tasks.floor import ClosingBooks, close_floor_books, open_floor_ahead
from tasks.openlineage_runs import flow_completed, flow_failed, flow_started
from tasks.prepare import check_order, prepare
from tasks.provenance import RunContext
from tasks.resources import load_models, open_resources
from tasks.results import store_results
from tasks.reuse import Reused, reuse_task
from tasks.stage_tasks import STAGE_TASKS


# One worker by default: on a CPU-only host the render's threads already use every
# core. Entry points size the pool from the settings (`produce.with_options`).
# The result (a Delivery, as JSON) is persisted; entry points point its storage into the
# factory's store (`for_store`), where API callers read it back.
@flow(
    name="produce",
    task_runner=ThreadPoolTaskRunner(max_workers=1),
    log_prints=True,
    persist_result=True,
    result_serializer="json",
    on_failure=[flow_failed],
    on_crashed=[flow_failed],
)
def produce(
    order: Order,
    store: str | None = None,
    cache: CacheMode = "use",
    floor: bool = True,
    registry: str | None = None,
) -> Delivery:
    """Turn an order into a signed H.264 deliverable in the object store.

    `store` is a directory or s3://bucket/prefix; unset means FACTORY_STORE or
    the local default under FACTORY_HOME. `cache`: "use" reuses identical earlier
    stage outputs, "off" computes everything without reading the cache, "refresh"
    recomputes everything and replaces the cache entries. `floor`: ingest the run's
    events into the factory-floor warehouse at the end and publish its summary.
    `registry`: a model registry (TOML) merged over the built-in one.
    """
    started = datetime.now(UTC)
    claim_run(str(flow_run.id))
    settings = Settings()
    models = load_models(settings, registry)
    # Refused before anything is written: no key, asset or record for a bad order.
    timeouts = settings.store_timeouts
    inputs = InputSource(open_store(store or settings.store_spec, timeouts), timeouts)
    checked = check_order(order, models, settings.models_dir, inputs)
    resources = open_resources(settings, device_class(), store, models)
    context = RunContext(order_id=order.id, flow_run_id=str(flow_run.id))
    flow_started(resources, context)
    production = prepare(order, resources, checked, context)
    # Quoted, Prefect passes these through as they are; otherwise it walks every field of
    # each (the order's every segment, the registry, the settings) looking for futures, for
    # every task run: 60 to 140 ms a task at 120 segments (bench/RESULTS.md). None holds one.
    shared = {
        "resources": quote(resources),
        "order": quote(order),
        "production": quote(production),
        "context": quote(context),
    }
    reused = reuse_task(**shared) if cache == "use" else Reused.nothing(len(order.segments))
    if floor and reused.final is None:
        # Something will compute: the warehouse's first touch overlaps it.
        open_floor_ahead(resources)
    takes = run_takes(shared, order, production.thresholds, cache, reused)
    if takes.exhausted:
        close_floor_books(resources, context, started, ingest=floor)
        raise QualityRejected(takes.report(order))
    accepted = takes.accepted_in_order()
    assembled = reused.final or STAGE_TASKS[FINAL.name](
        **shared, cache=cache, index=None, upstream=accepted
    )
    runs = [*takes.runs, assembled.run]
    # A run that computed nothing leaves its floor events to the next ingest (and says so)
    # unless FACTORY_INGEST_CACHED_RUNS: ingesting them is 1.5 of a cached demo's 2.5 CPU s.
    cached = len(runs) if all(run.cache_hit for run in runs) else None
    skip = floor and cached is not None and not settings.ingest_cached_runs
    books = ClosingBooks(
        resources, context, started, ingest=floor and not skip, cached=cached if skip else None
    )
    if assembled.verdict is not None and not assembled.verdict.passed:
        books.wait()
        raise QualityRejected(
            f"order {order.id}: the deliverable failed its suite\n{assembled.verdict.describe()}"
        )
    try:
        delivery = publish_delivery(
            resources,
            Delivery(
                order_id=order.id,
                flow_run_id=context.flow_run_id,
                deliverable=assembled.asset,
                record_digest=assembled.record_digest,
                duration_s=order.duration_s,
                store=resources.store.url,
                runs=runs,
                segment_verdicts=[result.verdict for result in accepted if result.verdict],
                deliverable_verdict=assembled.verdict,
            ),
            production.thresholds,
        )
    finally:
        books.wait()
    flow_completed(context, delivery, assembled.models)
    return delivery


def for_store(store_url: str, workers: int, timeouts: StoreTimeouts) -> Flow:
    """The produce flow with ``workers`` task threads and its result persisted in the store
    at ``store_url`` (the result-storage block is saved on the Prefect server)."""
    return produce.with_options(
        task_runner=ThreadPoolTaskRunner(max_workers=workers),
        result_storage=store_results(store_url, timeouts),
    )
