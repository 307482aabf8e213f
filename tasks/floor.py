"""Floor events from inside the Prefect tasks: one write-once event per task run attempt.

Each attempt writes its own event the moment it ends, success or failure, so a
crashed flow still leaves its cost behind and distributed workers need no shared
database. Failed attempts count their elapsed time as device time: the device
was held, and failed work costs money too.
"""

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import task_run

from factory.assets import StageResult
from factory.floor import EventStatus, FloorEvent, WorkerAvailability
from storage.floor_events import EventWriter
from storage.objectstore import ObjectStore
from storage.warehouse import Warehouse, summary
from storage.warehouse.summary import MARKDOWN_LISTS
from tasks.clock import TASK_RETRIES, is_transient_error
from tasks.provenance import RunContext
from tasks.resources import Resources
from tasks.stage import Job


class Attempt:
    """Filled in by the task body: what it produced."""

    def __init__(self) -> None:
        self.result: StageResult | None = None


@contextmanager
def floor_event(resources: Resources, context: RunContext, job: Job) -> Iterator[Attempt]:
    """Write this attempt's floor event for ``job`` when the body ends, whatever the outcome."""
    attempt = Attempt()
    store, stage, index = resources.store, job.stage.name, job.index
    model = job.model.entry.name if job.model else None
    bytes_in = sum(parent.asset.size for parent in job.parents)
    started = datetime.now(UTC)
    number = task_run.run_count or 1
    task_run_id = str(task_run.id) if task_run.id else "none"
    try:
        yield attempt
    except Exception as error:
        ended = datetime.now(UTC)
        retried = is_transient_error(error) and number <= TASK_RETRIES
        event = FloorEvent(
            order_id=context.order_id,
            flow_run_id=context.flow_run_id,
            task_run_id=task_run_id,
            segment_index=index,
            stage=stage,
            attempt=number,
            model=model,
            device_class=resources.device_class if job.stage.on_accelerator else "cpu",
            worker_id=resources.settings.worker_id,
            started=started,
            ended=ended,
            device_seconds=(ended - started).total_seconds(),
            status="retried" if retried else "failed",
            bytes_in=bytes_in,
        )
        _write_quietly(store, event)
        raise
    result = attempt.result
    if result is None:
        return
    status = _status(result)
    event = FloorEvent.from_run(
        result.run,
        order_id=context.order_id,
        flow_run_id=context.flow_run_id,
        task_run_id=task_run_id,
        status=status,
        cache_hit=result.run.cache_hit,
        attempt=number,
        model=model,
        bytes_in=bytes_in,
        bytes_out=result.asset.size,
        delivered_seconds=job.delivered_seconds if status != "rejected" else 0.0,
        worker_id=resources.settings.worker_id,
    )
    EventWriter(store).write_event(event)


def _status(result: StageResult) -> EventStatus:
    # A gate that reused an earlier rejection still rejects: its pass is not accepted.
    if result.verdict is not None and not result.verdict.passed:
        return "rejected"
    return "cache_hit" if result.run.cache_hit else "completed"


def _write_quietly(store: ObjectStore, event: FloorEvent) -> None:
    # The store may be the very thing that failed; the task's own error is what matters.
    try:
        EventWriter(store).write_event(event)
    except Exception:
        return


def open_floor_ahead(resources: Resources) -> None:
    """Open the warehouse in a thread now, so the end-of-run ingest finds it attached.

    The ingest waits for the attach (the lake's own lock) and fails, as it would have
    anyway, if attaching failed: here the error is left to it.
    """

    def attach() -> None:
        with contextlib.suppress(Exception):
            Warehouse(resources.warehouse).open_ahead()

    threading.Thread(target=attach, name="floor-open-ahead").start()


def close_floor(
    resources: Resources,
    context: RunContext,
    started: datetime,
    *,
    ingest: bool,
    cached: int | None = None,
) -> str | None:
    """Record this worker's availability for the run, then refresh the warehouse.

    Returns markdown for the run's Prefect artifact: the warehouse summary, or why the
    ingest did not happen (logged too; the run's events stay in the store and the next
    ingest loads them); None when ingest is off. ``cached``: the run computed nothing,
    all its ``cached`` stage runs were reused, and it is not ingested (see
    Settings.ingest_cached_runs): the artifact and the log say so.
    """
    worker = resources.settings.worker_id
    interval = WorkerAvailability(
        worker_id=worker,
        device_class=resources.device_class,
        up_from=started,
        up_to=datetime.now(UTC),
    )
    EventWriter(resources.store).write_availability(
        worker, [interval], batch_id=context.flow_run_id
    )
    if cached is not None:
        return _not_ingested(resources, cached)
    if not ingest:
        return None
    catalog = resources.settings.warehouse[0]
    try:
        warehouse = Warehouse(resources.warehouse)
        report = warehouse.ingest(resources.store, resources.trust_anchor)
        floor = summary(warehouse, lists=MARKDOWN_LISTS).markdown()
    except Exception as error:
        # The run's work is done and its events are in the store: a warehouse that cannot
        # take them now (unreachable catalog, commit races past its patience, a bug) is
        # reported in the log and the artifact, not a failed run.
        get_run_logger().warning(
            "floor ingest into %s failed, this run is not in the warehouse yet: %s",
            catalog,
            error,
        )
        return (
            "# Factory floor\n\n"
            f"**Ingest failed**: this run is not in the warehouse `{catalog}` yet.\n\n"
            f"```\n{error}\n```\n\n"
            "Its floor events are in the store; `factory floor ingest` loads them.\n"
        )
    if report.rejected:
        get_run_logger().warning(
            "floor ingest rejected %d object(s): %s",
            len(report.rejected),
            "; ".join(f"{item.uri}: {item.reason}" for item in report.rejected),
        )
    return floor


def _not_ingested(resources: Resources, cached: int) -> str:
    catalog = resources.settings.warehouse[0]
    get_run_logger().info(
        "floor: this run computed nothing (all %d stage runs reused); its floor events are "
        "in the store, not yet in the warehouse %s: the next ingest loads them",
        cached,
        catalog,
    )
    return (
        "# Factory floor\n\n"
        f"**Not ingested**: this run computed nothing (all {cached} stage runs reused from "
        f"the cache), so it was not loaded into the warehouse `{catalog}` at its end.\n\n"
        "Its floor events (cache hits, availability) are in the store; the next ingest "
        "loads them: a run that computes, `factory floor ingest`, or the nightly floor "
        "report. `FACTORY_INGEST_CACHED_RUNS=true` ingests such runs too.\n"
    )


def close_floor_books(
    resources: Resources, context: RunContext, started: datetime, *, ingest: bool
) -> None:
    """Close the run's floor books and show the warehouse summary in the Prefect UI.

    Called in the flow itself, not as a task: one task run fewer keeps the ephemeral
    API's SQLite quiet when the next flow run is created (bench/RESULTS.md), and the
    artifact belongs to the flow run either way.
    """
    ClosingBooks(resources, context, started, ingest=ingest).wait()


class ClosingBooks:
    """The run's floor books closing in a thread while the flow verifies and publishes its
    delivery: DuckDB's queries and the store's hashing release the GIL, so on 2 cores the
    two overlap (a fully cached demo run's floor books are about 1 s of its 2)."""

    def __init__(
        self,
        resources: Resources,
        context: RunContext,
        started: datetime,
        *,
        ingest: bool,
        cached: int | None = None,
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="floor-books")
        # In a copy of the flow's context, so its warnings go to the flow run's log.
        self._summary = self._pool.submit(
            contextvars.copy_context().run, close_floor, resources, context, started,
            ingest=ingest, cached=cached,
        )  # fmt: skip

    def wait(self) -> None:
        """Wait for the books, then show the warehouse summary as the flow run's artifact."""
        try:
            summary = self._summary.result()
        finally:
            self._pool.shutdown()
        if summary:
            create_markdown_artifact(summary, key="factory-floor", description="Factory floor")
