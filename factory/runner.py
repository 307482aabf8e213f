"""Runs the produce flow in this process with live progress bars on the terminal."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from factory import progress
from factory.orders import Order

_SEGMENT_STAGES = ("render", "composite", "encode")


def run_with_progress(
    order: Order, store: str | None, cache: str, floor: bool, console: Console, show: bool = True
):
    """Produce ``order`` and return its Delivery; bars per stage and per segment when ``show``."""
    from flows.produce import produce

    if not show:
        return produce(order, store, cache, floor)
    count = len(order.segments)
    bars = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    stage_bars = {stage: bars.add_task(f"[bold]{stage}", total=count) for stage in _SEGMENT_STAGES}
    stage_bars["assemble"] = bars.add_task("[bold]assemble", total=1)
    segment_bars = [
        bars.add_task(f"segment {index:>3}  waiting", total=len(_SEGMENT_STAGES))
        for index in range(count)
    ]

    def on_event(stage: str, index: int | None, event: progress.Event) -> None:
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
    with bars, progress.listening(on_event):
        return produce(order, store, cache, floor)
