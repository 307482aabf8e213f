"""Runs the produce flow in this process with live progress bars on the terminal."""

import logging
from contextlib import AbstractContextManager, nullcontext

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from factory.orders import Order
from factory.settings import StoreTimeouts
from factory.stages import SEGMENT_STAGES
from tasks import progress


def local_run_settings(api_url: str | None = None) -> AbstractContextManager:
    """Prefect settings for a flow run in this process: on ``api_url`` (the factory's local
    server) when given, else on PREFECT_API_URL or the ephemeral API.

    The flow-run heartbeat lets a server mark runs whose worker died; joining its thread
    costs every sync run about 0.3 s (a third of a fully cached run). The ephemeral API
    dies with this process, and on the local server a run whose process died is marked
    Crashed by the next run (flows.crashed_runs), so neither needs it. Runs against a
    configured PREFECT_API_URL keep it: workers and other hosts may be watching.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    if api_url is not None:
        return temporary_settings(
            {PREFECT_API_URL: api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        )
    if PREFECT_API_URL.value():
        return nullcontext()
    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


class _NoTracebacks(logging.Filter):
    """Keeps failures with tracebacks off the terminal; Prefect's run logs keep them.

    The command prints the one line that says what failed and what to do; a store outage
    would otherwise bury it under a traceback per task and retry.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None and record.levelno < logging.ERROR


def quiet_console() -> None:
    """Drop tracebacks and error records from Prefect's terminal handlers only."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *map(logging.getLogger, logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, _NoTracebacks) for f in handler.filters
            ):
                handler.addFilter(_NoTracebacks())


def run_with_progress(
    order: Order,
    *,
    store: str,
    registry: str | None,
    cache: str,
    floor: bool,
    workers: int,
    timeouts: StoreTimeouts,
    console: Console,
    api_url: str | None = None,
    show: bool = True,
    verbose: bool = False,
):
    """Produce ``order`` and return its Delivery; bars per stage and per segment when ``show``.

    ``workers`` sizes the flow's task pool (stage tasks that run at once); ``api_url`` is
    the Prefect API to run on (None: PREFECT_API_URL or the ephemeral API); without
    ``verbose`` the terminal shows no Prefect tracebacks (the caller prints the error).
    """
    from flows.crashed_runs import mark_dead_runs_crashed
    from flows.produce import for_store

    if not verbose:
        quiet_console()

    parameters = {"store": store, "cache": cache, "floor": floor, "registry": registry}
    if not show:
        with local_run_settings(api_url):
            mark_dead_runs_crashed()
            return for_store(store, workers, timeouts)(order, **parameters)
    count = len(order.segments)
    bars = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    stage_bars = {stage: bars.add_task(f"[bold]{stage}", total=count) for stage in SEGMENT_STAGES}
    stage_bars["assemble"] = bars.add_task("[bold]assemble", total=1)
    segment_bars = [
        bars.add_task(f"segment {index:>3}  waiting", total=len(SEGMENT_STAGES))
        for index in range(count)
    ]

    def on_event(stage: str, index: int | None, event: progress.Event) -> None:
        if event == "rejected" and index is not None:
            # The segment is taken again: one more of each stage to come.
            for name in SEGMENT_STAGES:
                bars.update(stage_bars[name], total=bars.tasks[stage_bars[name]].total + 1)
            bars.reset(segment_bars[index], description=f"segment {index:>3}  take rejected")
            return
        if event == "finished":
            bars.advance(stage_bars[stage])
        if index is None:
            return
        label = {"started": "…", "finished": "done", "failed": "FAILED"}[event]
        bars.update(
            segment_bars[index],
            description=f"segment {index:>3}  {stage} {label}",
            advance=1 if event == "finished" else 0,
        )

    console.print(f"order [bold]{order.id}[/]: {count} segments, {order.duration_s:.1f} s of video")
    with local_run_settings(api_url):
        for run_id in mark_dead_runs_crashed():
            console.print(f"marked flow run {run_id} Crashed: its process is gone")
        flow = for_store(store, workers, timeouts)
        with bars, progress.listening(on_event):
            return flow(order, **parameters)
